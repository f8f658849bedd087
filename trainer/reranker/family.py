"""The reranker as a curriculum family: a cross-encoder (an encoder with a fresh one-logit head
over ``query [SEP] passage``) trained with a listwise loss through the embedder's three stages
(2602.00805, section 2: both components go through the same curriculum and peak at different
stages).

Negatives per stage:

* ``bm25`` (stage 1): the lexical top ranks, plus ``random_negatives`` random articles.
* ``model`` (stage 2): the candidates the embedder named by ``TrainRerankerConfig.embedder``
  returns — what the reranker will see when serving — judged positives and candidates the
  embedder scores within ``false_negative_margin`` of the positive removed.
* ``model-refresh`` (stage 3): before every epoch the same embedder candidates are re-scored
  by the current reranker; its highest-scored non-relevant candidates are its own mistakes
  and become the negatives (a candidate scored far above the positive, beyond
  ``-false_negative_margin`` logits, is skipped as a likely unjudged positive).

The run folder, LoRA stacking, checkpoints, resume, progress and devices are the
curriculum's (:mod:`lexedge.trainer.curriculum`), the model and its heads are
:mod:`lexedge.trainer.reranker.model`'s, the starting encoder's surgery
:mod:`lexedge.trainer.reranker.surgery`'s and the distillation teacher
:mod:`lexedge.trainer.reranker.teacher`'s; only loading, batches, loss and evaluation are
here. The classification head and BERT's pooler are fresh, so each stage's adapter saves
them in full (peft ``modules_to_save``) and the stack merges like the embedder's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from lexedge.runtime.builtin import names_bundle
from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.evaluation import EvalConfig
from lexedge.trainer.backbone import load_tokenizer, run_batched
from lexedge.trainer.data import Example, TrainingData, base_examples
from lexedge.trainer.embedder.model import load_stage_embedder
from lexedge.trainer.embedder.retriever import bundle_rankings, embedder_rankings
from lexedge.trainer.family import Family
from lexedge.trainer.lora import resolve_model, stage_chain
from lexedge.trainer.losses import ListwiseDistillationLoss, ListwiseSoftmaxLoss
from lexedge.trainer.reranker.model import (CrossEncoder, SplitStates, load_cross_encoder,
                                            score_pairs, tokenize_pairs)
from lexedge.trainer.reranker.surgery import merge_embedder_stage, truncate_encoder
from lexedge.trainer.reranker.teacher import EmbedderTeacher
from lexedge.trainer.stage import (EncoderSettings, is_adapter, record_model_settings,
                                   recorded_head, recorded_head_entries)

HEAD_MODULES = ["classifier", "pooler"]
# What a stack of segments stages keeps from its first stage on: changing any of these would
# silently change what the stages below learnt.
STACK_CONSTANTS = ("head_temperature", "separate_layers", "cross_attention_bias")


def pair_length(config) -> int:
    """Tokens of one pair: the query's and the passage's budgets together."""
    return int(config.max_query_length + config.max_passage_length)


class RerankerFamily(Family):
    """Cross-encoder trained with a listwise softmax loss over 1 positive + n negatives.

    Args:
        config: the run's :class:`~lexedge.trainer.config.TrainRerankerConfig`.
        data: corpus, queries and training judgments.
        device: where models live.
    """

    name = "reranker"
    lora_options = {"modules_to_save": HEAD_MODULES, "task_type": "SEQ_CLS"}
    unused_parameters = True  # the segments head's classifier, a mean head's pooler
    evaluate_base = False

    def __init__(self, config, data: TrainingData, device):
        super().__init__(config, data, device)
        self.settings: EncoderSettings | None = None
        self.tokenizer = None
        # The first stage's candidates: (depth, {(query, positive): (ranking, score)}).
        self._candidates: tuple[int, dict] = (0, {})
        self._teacher = None
        self._head: dict = {}  # set by wrap: the entries every stage records
        self._split: SplitStates | None = None  # separate_layers > 0: cached lower states

    def prepare_base(self, base: Path, output: Path) -> Path:
        """Merge an embedder stage given as the base, keep ``base_layers``; a ``segments``
        base written here records its head and is evaluated (and gridded) as stage 0."""
        cache = self.config.model_cache or None
        prepared = base
        if is_adapter(base) and recorded_head(stage_chain(base, cache)) is None:
            # A trained embedder stage: its domain training is where the reranker starts.
            prepared = merge_embedder_stage(base, output / "base-merged", cache)
        if self.config.base_layers:
            prepared = truncate_encoder(prepared,
                                        output / f"base-{self.config.base_layers}layers",
                                        self.config.base_layers)
        if self.config.separate_layers:
            self._train_only_joint_layers(prepared)
        if prepared != base and self.config.head == "segments":
            # No fresh weights: the prepared encoder is already a reranker. (A built-in or
            # user-given base folder is never written to.)
            self.evaluate_base = True
            record_model_settings(prepared, self._head_entries(load_tokenizer([prepared]),
                                                               prepared))
        return prepared

    def _train_only_joint_layers(self, base: Path) -> None:
        """LoRA on the layers above ``separate_layers`` only (all of them unless
        ``lora.layers`` names some): the lower layers' states are computed once per text."""
        bottom = stage_chain(base, self.config.model_cache or None)[-1]
        config = json.loads((bottom / "config.json").read_text(encoding="utf-8"))
        total = int(config.get("num_hidden_layers", 0))
        if self.config.base_layers:
            total = min(total, self.config.base_layers)
        if not 0 < self.config.separate_layers < total:
            raise LexedgeError(f"config: separate_layers = {self.config.separate_layers}: "
                               f"{bottom} has {total} layers; leave at least one to attend "
                               "across the pair")
        if not self.config.lora.layers:
            self.config.lora.layers = list(range(self.config.separate_layers, total))

    def _head_entries(self, tokenizer, folder: Path) -> dict:
        """What a stage of this head records in ``lexedge_model.json`` (and serves with)."""
        entries = {"head": self.config.head}
        if self.config.head == "segments":
            if tokenizer.sep_token_id is None:
                raise LexedgeError(f"head = 'segments': {folder}'s tokenizer has no "
                                   "separator token")
            entries.update(head_temperature=self.config.head_temperature,
                           sep_token_id=int(tokenizer.sep_token_id))
            if self.config.separate_layers:
                cls_token_id = tokenizer.cls_token_id
                entries.update(separate_layers=self.config.separate_layers,
                               cross_attention_bias=self.config.cross_attention_bias,
                               cls_token_id=-1 if cls_token_id is None else int(cls_token_id))
        return entries

    # -- models ---------------------------------------------------------------------------
    def load_backbone(self, folder: Path, *, load_in_4bit: bool = False, device=None):
        return load_cross_encoder(folder, load_in_4bit=load_in_4bit,
                                  device=device or self.device)

    def wrap(self, backbone, chain: list[Path]) -> CrossEncoder:
        self.settings = EncoderSettings.read(chain)
        recorded = recorded_head_entries(chain)
        if recorded.get("head", self.config.head) != self.config.head:
            raise LexedgeError(f"config: head = {self.config.head!r}, but {chain[0]} was "
                               f"trained with head = {recorded['head']!r}; a stack keeps one "
                               "head")
        if self.config.head == "segments" and "head" in recorded:
            for name in STACK_CONSTANTS:
                wanted, found = getattr(self.config, name), recorded.get(name, 0)
                if name == "cross_attention_bias" and not self.config.separate_layers:
                    continue  # unused without split layers
                if wanted != found:
                    raise LexedgeError(f"config: {name} = {wanted}, but {chain[0]} was "
                                       f"trained with {found}; a stack keeps one {name}")
        self.tokenizer = load_tokenizer(chain)
        self._head = self._head_entries(self.tokenizer, chain[0])
        for name, value in self._head.items():
            setattr(self.settings, name, value)
        module = CrossEncoder(backbone, self.settings).to(self.device)
        # The lower layers of a new stage are those of the last (only the top ones train),
        # but a new cache per stage keeps that an assumption nothing depends on.
        self._split = SplitStates(module, self.tokenizer,
                                  self.runtime.encode_batch_size) \
            if self.settings.separate_layers else None
        return module

    def model_settings(self) -> dict:
        return dict(self._head)

    # -- negatives ------------------------------------------------------------------------
    def model_rankings(self, examples, stage, model, model_key):
        pool = base_examples(self.data, train_qrels=stage.train_qrels,
                             weak_pairs=stage.weak_pairs, seed=self.config.seed)
        # ``candidates`` is set only on a model-refresh stage (the config refuses it elsewhere).
        depth = stage.candidates or stage.rank_window[1]
        rankings, positive_scores = self.embedder_candidates(examples, depth, pool)
        if stage.negative_source == "model":
            return rankings, positive_scores
        # model-refresh: the current reranker orders the embedder's candidates.
        pairs: dict[tuple[str, str], int] = {}
        for example, ranking in zip(examples, rankings):
            for doc_id in [example.positive] + [d for d, _ in ranking]:
                pairs.setdefault((example.query, doc_id), len(pairs))
        texts = [(query, self.data.passage(doc_id)) for query, doc_id in pairs]
        if self._split is not None:
            scores = self._split_scores(model, texts, stage)
        else:
            scores = score_pairs(model, self.tokenizer, texts, max_length=pair_length(stage),
                                 batch_size=self.runtime.encode_batch_size,
                                 progress=self.runtime.progress,
                                 description="re-scoring candidates with the reranker")
        reranked, positives = [], []
        for example, ranking in zip(examples, rankings):
            scored = [(d, float(scores[pairs[(example.query, d)]])) for d, _ in ranking]
            reranked.append(sorted(scored, key=lambda item: -item[1]))
            positives.append(float(scores[pairs[(example.query, example.positive)]]))
        return reranked, positives

    def _split_scores(self, model, texts: list[tuple[str, str]], stage):
        """Logits of ``texts`` through the cached lower states (eval mode, batched)."""
        out = run_batched(
            model, len(texts), lambda i: len(texts[i][0]) + len(texts[i][1]),
            lambda rows, device: self._split.logits(
                [texts[i][0] for i in rows], [texts[i][1] for i in rows],
                query_length=stage.max_query_length, passage_length=stage.max_passage_length),
            batch_size=self.runtime.encode_batch_size)
        return np.zeros(0, dtype=np.float32) if out is None else out

    def embedder_candidates(self, examples: list[Example], depth: int,
                            pool: list[Example] | None = None):
        """The first stage's top ``depth`` for every example and its positive's score: the
        configured embedder's (dense, exact), or BM25's when none is configured. Computed
        once for ``pool`` (every example the stage may draw; default ``examples``) and looked
        up after that, so stage 3's epochs, each mining its own draw, share one pass (a
        deeper pass, stage 2's, serves a shallower depth by its head)."""
        wanted = [(e.query, e.positive) for e in examples]
        cached, cache = self._candidates
        if cached < depth or not all(key in cache for key in wanted):
            cache = self._first_stage(pool or examples, depth)
            self._candidates = (depth, cache)
        found = [cache[key] for key in wanted]
        return [ranking[:depth] for ranking, _ in found], [score for _, score in found]

    def _first_stage(self, examples: list[Example], depth: int) -> dict:
        if not self.config.embedder:
            found = (self.bm25_rankings(examples, depth), [None] * len(examples))
        elif names_bundle(self.config.embedder):  # the served embedder, through onnxruntime
            found = bundle_rankings(self.data, self.config.embedder, examples, depth=depth,
                                    progress=self.runtime.progress)
        else:
            folder = resolve_model(self.config.embedder)
            stage = load_stage_embedder(folder, self.device)
            # At the lengths the embedder was evaluated (and will be served) at.
            found = embedder_rankings(self.data, self.runtime, stage.embedder, stage.tokenizer,
                                      examples, depth=depth, query_length=stage.query_length,
                                      passage_length=stage.passage_length, model_key=folder)
            del stage
        return {(e.query, e.positive): (ranking, score)
                for e, ranking, score in zip(examples, *found)}

    # -- batches and loss -----------------------------------------------------------------
    def _batch(self, group: list[Example], stage, rng) -> dict:
        """Each query brings its positive (first) and the same number of negatives."""
        queries, passages = [], []
        for example in group:
            doc_ids = [example.positive] + self.sample_negatives(
                example, stage.hard_negatives, stage.random_negatives, rng)
            queries += [example.query] * len(doc_ids)
            passages += [self.data.passage(doc_id, example.kind) for doc_id in doc_ids]
        return {"queries": queries, "passages": passages, "groups": len(group),
                "kind": group[0].kind}

    def shard(self, batch: dict, rank: int, world: int) -> dict:
        """Rank ``rank``'s ``groups / world`` groups of a global batch (each group is a query
        with its positive and negatives: the loss needs nothing from the other shares)."""
        groups = batch["groups"]  # divides among the processes: checked by the curriculum
        size, per = len(batch["queries"]) // groups, groups // world
        rows = slice(rank * per * size, (rank + 1) * per * size)
        return {**batch, "queries": batch["queries"][rows], "passages": batch["passages"][rows],
                "groups": per}

    def count(self, batch: dict) -> int:
        return batch["groups"]

    def compute_loss(self, model, batch: dict, stage) -> torch.Tensor:
        if self._split is not None:  # only the layers above the split run
            # through the model's forward, so DDP sees it under several processes
            logits = model(split=self._split, queries=batch["queries"],
                           passages=batch["passages"], query_length=stage.max_query_length,
                           passage_length=stage.max_passage_length)
            logits = logits.view(batch["groups"], -1)
        else:
            inputs = tokenize_pairs(self.tokenizer, self.settings, batch["queries"],
                                    batch["passages"], pair_length(stage), self.device)
            logits = model(**inputs).view(batch["groups"], -1)
        if stage.distill_weight <= 0:
            return ListwiseSoftmaxLoss()(logits)
        size = logits.shape[1]
        teacher = self.teacher().logits(
            batch["queries"][::size],
            [batch["passages"][start:start + size]
             for start in range(0, len(batch["passages"]), size)])
        return ListwiseDistillationLoss(stage.distill_weight)(logits, teacher.to(logits.device))

    def teacher(self):
        """The distillation teacher, loaded on first use."""
        if self._teacher is None:
            self._teacher = EmbedderTeacher(self.config.teacher, self.device,
                                            temperature=self.config.teacher_temperature,
                                            batch_size=self.runtime.encode_batch_size)
        return self._teacher

    # -- saving and evaluation ------------------------------------------------------------
    def save_full(self, module: CrossEncoder, out_dir: Path) -> None:
        module.model.save_pretrained(str(out_dir), safe_serialization=True)

    def peft_model(self, module: CrossEncoder):
        return module.model

    def evaluation_config(self, model_dir: Path):
        """Reranker-only metrics: the first stage's top ``evaluation.candidates`` on the dev
        split re-ordered by the stage (``lexedge eval --method rerank --model DIR``)."""
        evaluation = self.config.evaluation
        return EvalConfig(data_dir=self.config.data_dir, split=evaluation.split,
                          method="rerank", model=str(model_dir),
                          rerank=evaluation.candidates, extra={
                              "first_stage": self.config.embedder or "bm25",
                              "device": str(self.device.type),
                              "batch_size": self.runtime.encode_batch_size,
                              "max_query_length": evaluation.max_query_length,
                              "max_passage_length": evaluation.max_passage_length,
                              "progress": self.runtime.progress})
