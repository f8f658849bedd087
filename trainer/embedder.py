"""The embedder as a curriculum *model family*: how it loads, which examples and negatives each
stage trains on, how a batch becomes a loss, and how it is saved and evaluated.

The curriculum (:mod:`lexedge.trainer.curriculum`) owns everything else — stage order, LoRA
stacking, checkpoints, resume, progress, devices — so the reranker of issue #4 is another
family with the same methods (a cross-encoder backbone with a one-logit head, pairs scored
jointly, a listwise loss) and reuses all of it.

Negatives per stage (2602.00805, section 2; 2412.13205's BM25 then model-mined phases):

* ``bm25``: the lexical top ranks of the query (lexedge's own BM25 and analyzer), judged
  positives removed.
* ``model``: ranks ``rank_window`` of the previous stage's model, judged positives and
  candidates scoring within ``false_negative_margin`` of the positive removed.
* ``model-refresh``: the same, re-mined with the current model before every epoch.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from lexedge.trainer.data import Example, TrainingData
from lexedge.trainer.losses import InfoNCELoss
from lexedge.trainer.mining import select_hard_negatives, streaming_top_k
from lexedge.trainer.modeling import (Embedder, EncoderSettings, encode, load_backbone,
                                      load_tokenizer, tokenize)

log = logging.getLogger("lexedge.trainer")


class EmbedderFamily:
    """Bi-encoder retriever trained with InfoNCE over in-batch and hard negatives.

    Args:
        data: corpus, queries and training judgments.
        runtime: a :class:`~lexedge.trainer.config.RuntimeSettings`.
        device: where models live.
    """

    name = "embedder"
    lora_options: dict = {}  # a reranker passes modules_to_save=["classifier"], SEQ_CLS

    def __init__(self, data: TrainingData, runtime, device):
        self.data = data
        self.runtime = runtime
        self.device = device
        self._bm25 = None
        self.settings: EncoderSettings | None = None
        self.tokenizer = None

    # -- models ---------------------------------------------------------------------------
    def load_backbone(self, folder: Path, *, load_in_4bit: bool = False, device=None):
        return load_backbone(folder, load_in_4bit=load_in_4bit, device=device or self.device)

    def wrap(self, backbone, chain: list[Path]) -> Embedder:
        """The trainable module around a (possibly peft-wrapped) backbone."""
        self.settings = EncoderSettings.read(chain)
        self.tokenizer = load_tokenizer(chain)
        return Embedder(backbone, self.settings).to(self.device)

    # -- negatives ------------------------------------------------------------------------
    def attach_negatives(self, examples: list[Example], stage, *, model: Embedder | None,
                         model_key: Path | None) -> dict:
        """Fill ``example.negatives`` for ``stage.negative_source``; return mining stats."""
        if stage.negative_source == "bm25":
            rankings = self._bm25_rankings(examples, stage.rank_window[1])
            positive_scores = [None] * len(examples)
        else:
            rankings, positive_scores = self._model_rankings(examples, stage, model, model_key)
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

    def _bm25_rankings(self, examples, depth):
        if self._bm25 is None:
            from lexedge.runtime.bm25 import BM25Index
            from lexedge.runtime.index import choose_analyzer

            analyzer = choose_analyzer(self.data.dataset.corpus_path, "auto")
            self._bm25 = BM25Index.build(self.data.documents.values(), analyzer)
        unique = list(dict.fromkeys(e.query for e in examples))
        extra = max(len(e.judged) for e in examples)
        found = dict(zip(unique, self._bm25.search_many(unique, k=depth + extra)))
        return [found[e.query] for e in examples]

    def _model_rankings(self, examples, stage, model, model_key):
        from lexedge.trainer.retrieval import corpus_embeddings

        corpus = corpus_embeddings(model, self.tokenizer, self.settings, self.data,
                                   model_key=model_key, max_length=stage.max_passage_length,
                                   batch_size=self.runtime.encode_batch_size,
                                   progress=self.runtime.progress)
        unique = list(dict.fromkeys(e.query for e in examples))
        vectors = encode(model, self.tokenizer, [self.settings.query_prefix + q for q in unique],
                         max_length=stage.max_query_length,
                         batch_size=self.runtime.encode_batch_size)
        extra = max(len(e.judged) for e in examples)
        scores, indices = streaming_top_k(vectors, corpus, stage.rank_window[1] + extra)
        row = {q: i for i, q in enumerate(unique)}
        position = {doc_id: i for i, doc_id in enumerate(self.data.documents)}
        doc_ids = self.data.doc_ids
        rankings, positive_scores = [], []
        for example in examples:
            r = row[example.query]
            rankings.append([(doc_ids[int(i)], float(s))
                             for s, i in zip(scores[r], indices[r])])
            positive_scores.append(float(vectors[r] @ corpus[position[example.positive]]))
        return rankings, positive_scores

    # -- batches and loss -----------------------------------------------------------------
    def make_batches(self, examples: list[Example], stage, rng: np.random.Generator,
                     examples_per_epoch: int = 0) -> list[dict]:
        """Shuffle, group by kind (a title pair's passages carry no title; mixing the two in
        a batch would let the model tell positives by format), sample hard negatives."""
        order = rng.permutation(len(examples))
        if examples_per_epoch:
            order = order[:examples_per_epoch]
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
        doc_ids = self.data.doc_ids
        passages, passage_ids = [], []
        for example in group:
            passages.append(self.data.passage(example.positive, example.kind))
            passage_ids.append(example.positive)
        for example in group:
            pool = list(example.negatives)
            chosen = [pool[i] for i in rng.permutation(len(pool))[:stage.hard_negatives]]
            while len(chosen) < stage.hard_negatives:  # too few mined: a random article
                candidate = doc_ids[int(rng.integers(len(doc_ids)))]
                if candidate not in example.judged and candidate not in chosen:
                    chosen.append(candidate)
            for doc_id in chosen:
                passages.append(self.data.passage(doc_id, example.kind))
                passage_ids.append(doc_id)
        exclude = [[doc_id in example.judged for doc_id in passage_ids] for example in group]
        return {"queries": [e.query for e in group], "passages": passages,
                "targets": list(range(len(group))), "exclude": exclude,
                "kind": group[0].kind}

    def compute_loss(self, model, batch: dict, stage) -> torch.Tensor:
        settings, tokenizer = self.settings, self.tokenizer
        queries = tokenize(tokenizer, [settings.query_prefix + q for q in batch["queries"]],
                           stage.max_query_length, self.device)
        passages = tokenize(tokenizer, [settings.passage_prefix + p for p in batch["passages"]],
                            stage.max_passage_length, self.device)
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            # DDP synchronises gradients of one forward: run queries and passages together.
            vectors = model(**_stack(queries, passages, tokenizer.pad_token_id))
            query_vectors, passage_vectors = vectors[:len(batch["queries"])], \
                vectors[len(batch["queries"]):]
        else:
            query_vectors, passage_vectors = model(**queries), model(**passages)
        loss = InfoNCELoss(stage.temperature)
        return loss(query_vectors, passage_vectors,
                    torch.tensor(batch["targets"], device=self.device),
                    torch.tensor(batch["exclude"], dtype=torch.bool, device=self.device))

    # -- saving ---------------------------------------------------------------------------
    def save_full(self, module: Embedder, out_dir: Path) -> None:
        module.backbone.save_pretrained(str(out_dir), safe_serialization=True)

    def peft_model(self, module: Embedder):
        return module.backbone


def _stack(first: dict, second: dict, pad_id: int) -> dict:
    width = max(first["input_ids"].shape[1], second["input_ids"].shape[1])

    def pad(batch, key, value):
        tensor = batch[key]
        return torch.nn.functional.pad(tensor, (0, width - tensor.shape[1]), value=value)

    return {"input_ids": torch.cat([pad(first, "input_ids", pad_id),
                                    pad(second, "input_ids", pad_id)]),
            "attention_mask": torch.cat([pad(first, "attention_mask", 0),
                                         pad(second, "attention_mask", 0)])}
