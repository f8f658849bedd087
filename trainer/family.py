"""The base of a curriculum model family: what the embedder's and the reranker's families
share, namely the negatives of each stage (BM25's, or a model's through
:meth:`Family.model_rankings`), the shuffled batches grouped by kind, and negative sampling
(2602.00805 trains both components through the same three stages).

A family adds how its model loads and is wrapped, how a batch becomes a loss, how it is
saved and how a stage is evaluated (:mod:`lexedge.trainer.embedder.family`,
:mod:`lexedge.trainer.reranker.family`); :class:`~lexedge.trainer.curriculum.Curriculum`
owns the rest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lexedge.trainer.data import Example, TrainingData
from lexedge.trainer.mining import select_hard_negatives


class Family:
    """Base of a curriculum model family.

    Args:
        config: the run's configuration (``TrainEmbedderConfig`` or ``TrainRerankerConfig``).
        data: corpus, queries and training judgments.
        device: where models live.
    """

    name = ""
    lora_options: dict = {}
    # Under DDP: may a step leave trainable parameters out of its loss (a reranker head)?
    unused_parameters = False
    evaluate_base = True  # a reranker's base has a fresh, untrained head: nothing to measure

    def __init__(self, config, data: TrainingData, device):
        self.config = config
        self.data = data
        self.runtime = config.runtime
        self.device = device
        self._bm25 = None

    def prepare_base(self, base: Path, output: Path) -> Path:
        """The model the first stage trains on (a family may derive one from ``base``)."""
        return base

    def model_settings(self) -> dict:
        """Entries this family adds to every stage's ``lexedge_model.json``."""
        return {}

    # -- negatives ------------------------------------------------------------------------
    def attach_negatives(self, examples: list[Example], stage, *, model,
                         model_key: Path | None) -> dict:
        """Fill ``example.negatives`` for ``stage.negative_source``; return mining stats."""
        if stage.negative_source == "bm25":
            rankings = self.bm25_rankings(examples, stage.rank_window[1])
            positive_scores = [None] * len(examples)
        else:
            rankings, positive_scores = self.model_rankings(examples, stage, model, model_key)
        skipped = {"judged": 0, "above_positive": 0}
        for example, ranking, positive_score in zip(examples, rankings, positive_scores):
            example.negatives, counts = select_hard_negatives(
                ranking, set(example.judged), window=stage.rank_window,
                limit=stage.negatives_pool, positive_score=positive_score,
                margin=stage.false_negative_margin)
            for key in skipped:
                skipped[key] += counts[key]
        kept = [len(e.negatives) for e in examples]
        return {"source": stage.negative_source, "window": list(stage.rank_window),
                "examples": len(examples), "mean_negatives": round(float(np.mean(kept)), 2),
                "without_negatives": int(sum(k == 0 for k in kept)),
                "skipped_judged": skipped["judged"],
                "skipped_above_positive": skipped["above_positive"]}

    def model_rankings(self, examples, stage, model, model_key):
        """``(rankings, positive_scores)`` for the ``model``/``model-refresh`` sources."""
        raise NotImplementedError

    def bm25_rankings(self, examples: list[Example], depth: int) -> list[list]:
        """Lexical top ``depth`` (plus room for judged articles) of every example's query."""
        if self._bm25 is None:
            from lexedge.runtime.bm25 import BM25Index
            from lexedge.runtime.index import choose_analyzer

            analyzer = choose_analyzer(self.data.dataset.corpus_path, "auto")
            self._bm25 = BM25Index.build(self.data.documents.values(), analyzer)
        unique = list(dict.fromkeys(e.query for e in examples))
        extra = max(len(e.judged) for e in examples)
        found = dict(zip(unique, self._bm25.search_many(unique, k=depth + extra)))
        return [found[e.query] for e in examples]

    # -- batches --------------------------------------------------------------------------
    def make_batches(self, examples: list[Example], stage, rng: np.random.Generator,
                     order) -> list[dict]:
        """The examples at ``order`` (the epoch's shuffled draw), grouped by kind (a title
        pair's passages carry no title; mixing the two in a batch would let the model tell
        positives by format), in batches with sampled hard negatives."""
        by_kind: dict[str, list[int]] = {}
        for i in order:
            by_kind.setdefault(examples[i].kind, []).append(int(i))
        groups = []
        for kind in sorted(by_kind):
            indices = by_kind[kind]
            for start in range(0, len(indices) - stage.batch_size + 1, stage.batch_size):
                groups.append(indices[start:start + stage.batch_size])
        batches = [self._batch([examples[i] for i in group], stage, rng) for group in groups]
        return [batches[i] for i in rng.permutation(len(batches))]

    def _batch(self, group: list[Example], stage, rng) -> dict:
        raise NotImplementedError

    def shard(self, batch: dict, rank: int, world: int) -> dict:
        """Rank ``rank``'s share of a global batch when ``world`` processes train."""
        raise NotImplementedError

    def count(self, batch: dict) -> int:
        """How many examples (queries) this process trains on in ``batch``."""
        raise NotImplementedError

    def sample_negatives(self, example: Example, count: int, random_count: int,
                         rng: np.random.Generator) -> list[str]:
        """``count`` of the example's mined negatives (random articles when too few were
        mined) plus ``random_count`` random articles, never a judged one."""
        doc_ids = self.data.doc_ids
        pool = list(example.negatives)
        chosen = [pool[i] for i in rng.permutation(len(pool))[:count]]
        wanted = count + random_count
        while len(chosen) < wanted and len(chosen) < len(doc_ids) - len(example.judged):
            candidate = doc_ids[int(rng.integers(len(doc_ids)))]
            if candidate not in example.judged and candidate not in chosen:
                chosen.append(candidate)
        return chosen

    # -- evaluation -----------------------------------------------------------------------
    def evaluation_config(self, model_dir: Path):
        """The ``lexedge eval`` configuration that measures one stage on the dev split."""
        raise NotImplementedError
