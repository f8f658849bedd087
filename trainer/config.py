"""Training configuration: one dataclass per command (``lexedge train embedder``,
``lexedge train reranker``), their sections (``[lora]``, ``[runtime]``, ``[evaluation]``,
``[mlm]``, ``[stage1]`` …) and the checks that refuse a combination that cannot train.

Files and ``--set key=value`` overrides become these dataclasses through
:func:`lexedge.trainer.config_loader.load_config`, which also saves the resolved
configuration beside every artefact it produced. A setting is declared here once, with its
default.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lexedge.runtime.builtin import names_bundle
from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.settings import SearchSettings

STAGES = ("stage1", "stage2", "stage3")
PHASES = ("mlm", "1", "2", "3")


@dataclass
class LoraSettings:
    """LoRA adapter of one stage (Hu et al., 2021, "LoRA", arXiv:2106.09685).

    Args:
        r: rank of the update ``B A``.
        alpha: scaling numerator; the update is ``(alpha / r) B A``.
        dropout: dropout on the adapter's input.
        target_modules: module names (last path component) that receive an adapter.
        layers: transformer layer indices that receive adapters; empty means all. Adapting
            only the top layers also skips back-propagation through the bottom ones, which
            is most of a CPU step's cost.
    """

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: ["query", "key", "value", "dense"])
    layers: list[int] = field(default_factory=list)


@dataclass
class RuntimeSettings:
    """Where and how training runs.

    Args:
        device: ``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda``.
        bf16: autocast to bfloat16 on CUDA (ignored on CPU).
        gradient_checkpointing: recompute activations in the backward pass (saves memory).
        load_in_4bit: QLoRA (Dettmers et al., 2023, arXiv:2305.14314): load the frozen base
            in 4-bit NF4 through bitsandbytes; CUDA only, LoRA mode only.
        threads: torch CPU threads; 0 keeps torch's default.
        checkpoint_every: optimizer steps between resumable checkpoints.
        progress: show tqdm progress bars.
        encode_batch_size: batch size when encoding a corpus for mining or evaluation.
        accumulation: batches whose gradients add up before each optimizer step.
        gradient_cache_chunk: the embedder's cached contrastive loss (GradCache): encode a
            batch this many texts at a time, so a large batch of in-batch negatives fits a
            small memory with the same gradient; 0 turns it off.
    """

    device: str = "auto"
    bf16: bool = True
    gradient_checkpointing: bool = False
    load_in_4bit: bool = False
    threads: int = 0
    checkpoint_every: int = 50
    progress: bool = True
    encode_batch_size: int = 32
    accumulation: int = 1
    gradient_cache_chunk: int = 0


@dataclass
class MlmSettings:
    """Phase 0: continued masked-language-model pretraining on the corpus text
    (2412.19265's first phase; Gururangan et al., 2020, "Don't Stop Pretraining",
    arXiv:2004.10964).

    Args:
        steps: optimizer steps.
        batch_size: articles per step.
        learning_rate: peak learning rate (linear warm-up then linear decay).
        warmup_ratio: share of ``steps`` spent warming up.
        mask_probability: share of tokens selected for prediction (BERT's 15 %, 80/10/10).
        max_length: tokens per article.
        max_documents: articles sampled from the corpus; 0 takes all.
    """

    steps: int = 200
    batch_size: int = 16
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    mask_probability: float = 0.15
    max_length: int = 128
    max_documents: int = 0


@dataclass
class StageSettings:
    """One curriculum stage (2602.00805, section 2: weak supervision → mined hard samples →
    negatives refreshed every epoch).

    Args:
        mode: ``lora`` (a new adapter on the previous stages' merged weights) or ``full``.
        steps: optimizer steps; 0 derives them from ``epochs``.
        epochs: passes over the stage's examples when ``steps`` is 0; stage 3 re-mines
            before each of them.
        examples_per_epoch: examples an epoch samples from the stage's pool (0: all of
            them); a smaller epoch re-mines more often for the same steps.
        batch_size: queries per step across all processes (each of ``world`` processes
            takes ``batch_size / world``); each brings its positive and its hard negatives,
            and every other passage in the batch, gathered from every process, is an
            in-batch negative.
        learning_rate: peak learning rate (linear warm-up, linear decay).
        head_learning_rate: peak learning rate of modules trained in full beside a LoRA
            adapter (a reranker's fresh head); 0: ``learning_rate``.
        warmup_ratio: share of the steps spent warming up.
        weight_decay: AdamW weight decay.
        temperature: InfoNCE temperature.
        hard_negatives: hard negatives per query in a step.
        random_negatives: random corpus articles added to each query's negatives (a
            reranker's stage 1 sees easy negatives too; an embedder has in-batch ones).
        negative_source: ``bm25`` (lexical, stage 1), ``model`` (mined once with the
            previous stage's model, stage 2) or ``model-refresh`` (re-mined with the current
            model before every epoch, stage 3). For a reranker, ``model`` is the candidates
            of ``TrainRerankerConfig.embedder`` and ``model-refresh`` those candidates
            re-ranked by the current reranker (its own mistakes).
        rank_window: ``[first, last)`` 0-based ranks negatives are drawn from.
        candidates: a reranker's ``model-refresh``: how many of the embedder's candidates
            the current reranker re-orders, ``rank_window`` then applying to its order (0:
            ``rank_window``'s end). ``candidates = 20`` with ``rank_window = [0, 5]`` takes
            the reranker's own top 5 among what it re-ranks when serving at K = 20.
        negatives_pool: candidates kept per query after filtering; each step samples
            ``hard_negatives`` of them.
        false_negative_margin: skip a mined candidate whose score is at least the
            positive's score minus this margin (a reranker's logits: a negative margin keeps
            the mistakes and skips only candidates far above the positive) (likely unjudged positives; Moreira et al.,
            2024, "NV-Retriever", arXiv:2407.15831).
        train_qrels: use the training split's judgments as (query, positive) pairs.
        weak_pairs: article title → article text pairs drawn from the corpus (0: none,
            -1: every titled article).
        max_query_length: query tokens.
        max_passage_length: passage tokens.
        distill_weight: a reranker's share of distillation from
            ``TrainRerankerConfig.teacher`` in its loss (0: the listwise loss alone).
        mining_bundle: an embedder's ``model`` stage: mine with this exported bundle
            (a folder, or ``builtin``) through onnxruntime instead of with the model being
            trained ("" : the model). A 12-layer model trained on 2 CPU cores then mines
            the full corpora with the 3-layer INT8 built-in in about 2 minutes instead of
            encoding them in torch for most of an hour.
    """

    mode: str = "lora"
    steps: int = 0
    epochs: float = 1.0
    examples_per_epoch: int = 0
    batch_size: int = 16
    learning_rate: float = 1e-4
    head_learning_rate: float = 0.0
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    temperature: float = 0.05
    hard_negatives: int = 1
    random_negatives: int = 0
    negative_source: str = "bm25"
    rank_window: list[int] = field(default_factory=lambda: [0, 30])
    candidates: int = 0
    negatives_pool: int = 8
    false_negative_margin: float = 0.0
    train_qrels: bool = True
    weak_pairs: int = 0
    max_query_length: int = 64
    max_passage_length: int = 128
    distill_weight: float = 0.0
    mining_bundle: str = ""


def _stage1() -> StageSettings:
    return StageSettings(negative_source="bm25", rank_window=[0, 30], weak_pairs=-1)


def _stage2() -> StageSettings:
    return StageSettings(negative_source="model", rank_window=[10, 100],
                         false_negative_margin=0.01)


def _stage3() -> StageSettings:
    return StageSettings(negative_source="model-refresh", rank_window=[3, 50], epochs=2.0,
                         false_negative_margin=0.01, learning_rate=5e-5)


@dataclass
class EvaluationSettings:
    """Which split every stage is measured on, and at what passage length."""

    enabled: bool = True
    split: str = "dev"
    max_passage_length: int = 128
    max_query_length: int = 64


@dataclass
class TrainEmbedderConfig:
    """``lexedge train embedder``: MLM pretraining plus the three-stage curriculum.

    Args:
        data_dir: BEIR folder (corpus.jsonl, queries.jsonl, qrels/).
        output_dir: run folder; each stage becomes ``output_dir/<stage>``.
        base_model: ``default``/``e5-small``/``minilm`` or a local model folder.
        model_cache: where built-in base models are imported ('' = ``$LEXEDGE_MODEL_CACHE``
            or ``~/.cache/lexedge/models``).
        train_split: qrels split the stages train on.
        phases: which of ``mlm``, ``1``, ``2``, ``3`` to run, in that order.
        seed: seeds sampling, adapter initialisation and dropout.
    """

    data_dir: str = ""
    output_dir: str = ""
    base_model: str = "default"
    model_cache: str = ""
    train_split: str = "train"
    phases: list[str] = field(default_factory=lambda: ["1", "2", "3"])
    seed: int = 13
    lora: LoraSettings = field(default_factory=LoraSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    mlm: MlmSettings = field(default_factory=MlmSettings)
    stage1: StageSettings = field(default_factory=_stage1)
    stage2: StageSettings = field(default_factory=_stage2)
    stage3: StageSettings = field(default_factory=_stage3)

    def validate(self) -> "TrainEmbedderConfig":
        if not self.data_dir:
            raise LexedgeError("config: data_dir is required")
        if not self.output_dir:
            raise LexedgeError("config: output_dir is required")
        for phase in self.phases:
            if phase not in PHASES:
                raise LexedgeError(f"config: unknown phase {phase!r} "
                                   f"(choose from {', '.join(PHASES)})")
        for name in STAGES:
            stage = getattr(self, name)
            if stage.mode not in ("lora", "full"):
                raise LexedgeError(f"config: {name}.mode must be lora or full")
            if not 0.0 <= stage.distill_weight <= 1.0:
                raise LexedgeError(f"config: {name}.distill_weight must be within [0, 1]")
            if stage.distill_weight > 0 and not hasattr(self, "teacher"):
                raise LexedgeError(f"config: {name}.distill_weight: distillation trains a "
                                   "reranker (lexedge train reranker)")
            if stage.negative_source not in ("bm25", "model", "model-refresh"):
                raise LexedgeError(f"config: {name}.negative_source must be bm25, model or "
                                   "model-refresh")
            first, last = stage.rank_window
            if not 0 <= first < last:
                raise LexedgeError(f"config: {name}.rank_window must be [first, last) with "
                                   f"0 <= first < last, got {stage.rank_window}")
            if stage.candidates and (stage.negative_source != "model-refresh"
                                     or not hasattr(self, "teacher")):
                raise LexedgeError(f"config: {name}.candidates applies to a reranker's "
                                   "model-refresh stage only")
            if stage.mining_bundle and (stage.negative_source != "model"
                                        or hasattr(self, "teacher")):
                raise LexedgeError(f"config: {name}.mining_bundle applies to an embedder's "
                                   "model stage only (negative_source = model)")
            if stage.mining_bundle and not names_bundle(stage.mining_bundle):
                raise LexedgeError(f"config: {name}.mining_bundle: {stage.mining_bundle} is "
                                   "not a bundle folder (no manifest.json); give one, or "
                                   "builtin")
            if stage.candidates and stage.candidates < last:
                raise LexedgeError(f"config: {name}.candidates ({stage.candidates}) must be at "
                                   f"least rank_window's end ({last})")
        if self.runtime.load_in_4bit and any(getattr(self, s).mode == "full" for s in STAGES):
            raise LexedgeError("config: runtime.load_in_4bit (QLoRA) trains adapters only; "
                               "set every stage's mode to lora")
        runtime = self.runtime
        if runtime.accumulation < 1 or runtime.gradient_cache_chunk < 0:
            raise LexedgeError("config: runtime.accumulation must be >= 1 and "
                               "runtime.gradient_cache_chunk >= 0")
        if runtime.accumulation > 1 and runtime.gradient_cache_chunk:
            raise LexedgeError("config: runtime.accumulation and runtime.gradient_cache_chunk "
                               "are two ways to a larger batch; choose one")
        return self


def _reranker_stage1() -> StageSettings:
    return StageSettings(negative_source="bm25", rank_window=[0, 30], hard_negatives=3,
                         random_negatives=1, max_passage_length=128, head_learning_rate=3e-3)


def _reranker_stage2() -> StageSettings:
    return StageSettings(negative_source="model", rank_window=[0, 30], hard_negatives=4,
                         false_negative_margin=0.01, max_passage_length=128,
                         head_learning_rate=1e-3)


def _reranker_stage3() -> StageSettings:
    return StageSettings(negative_source="model-refresh", rank_window=[0, 20],
                         hard_negatives=4, epochs=2.0, false_negative_margin=-3.0,
                         learning_rate=5e-5, max_passage_length=128, head_learning_rate=5e-4)


RERANKER_HEADS = ("pooler", "mean", "segments")


@dataclass
class RerankerEvaluationSettings(EvaluationSettings):
    """Reranker-only metrics of every stage: the first stage's top ``candidates`` on the
    dev split, re-ordered by the reranker (the same candidates for every stage); by default
    as many as a search re-ranks (``SearchSettings.rerank``)."""

    candidates: int = SearchSettings.rerank


@dataclass
class TrainRerankerConfig(TrainEmbedderConfig):
    """``lexedge train reranker``: the cross-encoder through the same three stages.

    A pair is ``query [SEP] passage`` with the base model's prefixes (truncated longest
    first to ``max_query_length + max_passage_length`` tokens); the head is one fresh logit.

    Args (besides the embedder's):
        base_model: as the embedder's, or a trained embedder stage folder: its LoRA stack
            is merged into ``output_dir/base-merged`` once and the cross-encoder starts from
            that domain-trained encoder (with ``head = "segments"`` it is a reranker before
            any reranker training).
        embedder: the embedder stage folder (or built-in base name) whose candidates stage 2
            trains on and stage 3 re-ranks, and that evaluation re-ranks: what the reranker
            sees when serving. Empty: BM25 candidates. An exported bundle (a folder, or
            ``builtin``) mines and evaluates through onnxruntime, INT8 as served: the merged
            STARD and ja_appi corpora in about 2 minutes on 2 cores, where the 3-layer
            student in torch took 7 to 13 minutes.
        base_layers: keep only the first N transformer layers of the base model (0: all); a
            shallower cross-encoder is what a laptop can afford per query.
        teacher: an embedder stage folder (or built-in base name) whose scores a stage with
            ``distill_weight`` > 0 distils: its cosine similarities over each training
            group, divided by ``teacher_temperature``, are the soft targets.
        teacher_temperature: divides the teacher's cosines (E5 was trained at 0.01).
        head: what the one logit reads: ``pooler`` (the sequence-classification model's
            own: the CLS vector through BERT's pooler) or ``mean`` (the mean of the last
            layer's tokens, the pooling E5 was trained with; multilingual-e5 ships no pooler
            weights, so ``pooler`` starts from a random one), or ``segments``: the cosine of
            the mean of the query's tokens and the mean of the passage's tokens of the one
            joint encoding, over ``head_temperature`` — no fresh weights at all, so a
            contrastively trained encoder (E5) starts as a useful reranker and training
            adds what attention across the pair sees. Recorded in every stage's
            ``lexedge_model.json``; a stack keeps one head.
        head_temperature: divides the ``segments`` cosine.
        separate_layers: with ``head = "segments"``, how many lower layers encode the query
            and the passage each alone (split attention, PreTTR: MacAvaney et al., 2020);
            only the layers above attend across the pair, and only they are trained (LoRA
            ``lora.layers`` defaults to them), so each text's lower states are computed once
            per run. From a trained embedder the untrained model then ranks close to it.
            0 (default): every layer sees the whole pair.
        cross_attention_bias: added to every query-passage attention logit in the layers
            above ``separate_layers``: negative keeps the start close to the embedder.
    """

    embedder: str = ""
    base_layers: int = 0
    teacher: str = ""
    teacher_temperature: float = 0.01
    head: str = "pooler"
    head_temperature: float = 0.05
    separate_layers: int = 0
    cross_attention_bias: float = -4.0
    evaluation: RerankerEvaluationSettings = field(default_factory=RerankerEvaluationSettings)
    stage1: StageSettings = field(default_factory=_reranker_stage1)
    stage2: StageSettings = field(default_factory=_reranker_stage2)
    stage3: StageSettings = field(default_factory=_reranker_stage3)

    def validate(self) -> "TrainRerankerConfig":
        super().validate()
        if "mlm" in self.phases:
            raise LexedgeError("config: a reranker has no mlm phase; pretrain the encoder "
                               "with lexedge train embedder and use it as base_model")
        if self.base_layers < 0:
            raise LexedgeError("config: base_layers must be >= 0")
        if self.runtime.gradient_cache_chunk:
            raise LexedgeError("config: runtime.gradient_cache_chunk caches an embedder's "
                               "in-batch loss; a reranker's groups need no cache (use "
                               "runtime.accumulation)")
        if self.evaluation.candidates < 1:
            raise LexedgeError("config: evaluation.candidates must be >= 1")
        for name in STAGES:
            weight = getattr(self, name).distill_weight
            if weight > 0 and not self.teacher:
                raise LexedgeError(f"config: {name}.distill_weight = {weight:g} needs a "
                                   "teacher (an embedder stage folder)")
        if self.teacher_temperature <= 0 or self.head_temperature <= 0:
            raise LexedgeError("config: teacher_temperature and head_temperature must be "
                               "positive")
        if self.head not in RERANKER_HEADS:
            raise LexedgeError(f"config: head = {self.head!r}; expected one of "
                               f"{', '.join(RERANKER_HEADS)}")
        if self.separate_layers < 0:
            raise LexedgeError("config: separate_layers must be >= 0")
        if self.separate_layers and self.head != "segments":
            raise LexedgeError(f"config: separate_layers = {self.separate_layers} needs "
                               f"head = 'segments' (head = {self.head!r})")
        full = [name for name in STAGES if getattr(self, name).mode == "full"]
        if self.separate_layers and full:
            raise LexedgeError(f"config: separate_layers = {self.separate_layers} trains "
                               f"LoRA above the split only; {full[0]}.mode = 'full' would "
                               "train the lower layers too")
        if self.separate_layers and self.lora.layers and \
                min(self.lora.layers) < self.separate_layers:
            raise LexedgeError(f"config: lora.layers = {self.lora.layers} trains a layer "
                               f"below separate_layers = {self.separate_layers}; the lower "
                               "layers stay frozen (their states are computed once)")
        return self
