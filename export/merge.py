"""Fold a stage's LoRA stack into its base weights: one plain torch model to export.

A *stage folder* is what ``lexedge train`` writes (format, file names and readers in
:mod:`lexedge.trainer.stage`): either a Hugging Face model folder (``config.json`` and
weights), or a peft adapter folder holding every LoRA stage down to its base model, with
``lexedge_stack.json`` naming the stage below and the base (relative to the folder, absolute,
or a built-in base name such as ``default``). The stack is walked and merged by the trainer's
own :func:`~lexedge.trainer.lora.load_stage_backbone`, so export rebuilds a stage exactly as
the next training stage did.

The adapter merges into the base: ``W' = W + (alpha / r) B A`` (Hu et al., 2021, "LoRA",
arXiv:2106.09685), so the exported graph has no adapter branches and costs what the base
model costs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.storage import sha256_file
from lexedge.trainer.stage import (ADAPTER_CONFIG, MODEL_SETTINGS, STAGE_MANIFEST, STAGE_METRICS,
                                   EncoderSettings, kind_of, read_model_settings)

EMBEDDER, RERANKER = "embedder", "reranker"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


@dataclass
class MergedStage:
    """A stage ready to export.

    Attributes:
        model: float32 torch model in eval mode, eager attention, adapters merged.
        kind: ``"embedder"`` or ``"reranker"``.
        settings: pooling, normalize, query_prefix, passage_prefix, max_length: the nearest
            ``lexedge_model.json`` in the stack, else sentence-transformers' pooling config,
            else mean pooling, normalised, no prefixes.
        tokenizer_file: the nearest ``tokenizer.json`` in the stack.
        source: provenance for the manifest: path, weight hashes, stage, base (nested).
        metrics: each stage folder's ``metrics.json`` by folder, or ``None``.
    """

    model: object
    kind: str
    settings: dict
    tokenizer_file: Path
    source: dict
    metrics: dict | None


def load_merged(name_or_path: str | Path, kind: str,
                cache_dir: str | Path | None = None) -> MergedStage:
    """Load a stage (``kind`` embedder or reranker) and merge its adapters into its base.

    Example:
        >>> stage = load_merged("runs/stage2", "embedder")  # doctest: +SKIP
        >>> stage.source["base"]["stage"]                   # doctest: +SKIP
        'stage1'
    """
    import torch

    from lexedge.trainer.lora import load_stage_backbone, stage_chain

    if kind not in (EMBEDDER, RERANKER):
        raise LexedgeError(f"stage kind must be {EMBEDDER} or {RERANKER}, got {kind!r}")
    stack = stage_chain(name_or_path, cache_dir)
    if kind == RERANKER:
        _check_reranker_head(stack[-1], stack[:-1])
    model, stack = load_stage_backbone(
        stack[0], cache_dir=cache_dir,
        loader=lambda folder, load_in_4bit=False, device=None: _load_base(folder, kind))
    model = model.to(torch.float32).eval()
    return MergedStage(model=model, kind=kind, settings=_settings(stack, model.config),
                       tokenizer_file=_tokenizer_file(stack), source=_source(stack),
                       metrics=_metrics(stack))


def _load_base(folder: Path, kind: str):
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification

    loader = AutoModel if kind == EMBEDDER else AutoModelForSequenceClassification
    extra = {"num_labels": 1}
    if kind == EMBEDDER:
        # An embedder pools its own way: BERT's pooler would only be dead, randomly
        # initialised weights for models saved without one (E5).
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        extra = {"add_pooling_layer": False} if config.get("model_type") in (
            "bert", "roberta", "xlm-roberta") else {}
    try:
        # Eager attention: onnxruntime fuses the attention it exports into one Attention node;
        # the SDPA path exports as a pattern the fusion does not recognise.
        return loader.from_pretrained(str(folder), attn_implementation="eager",
                                      dtype=torch.float32, **extra)
    except (OSError, ValueError) as exc:
        raise LexedgeError(f"{folder}: cannot load as a {kind} ({exc})") from None


def _check_reranker_head(base: Path, adapters: list[Path]) -> None:
    """A cross-encoder's one-logit head is trained: refuse a model that would get a fresh one
    (the ``segments`` head has no weights: a base that records it is a reranker)."""
    if read_model_settings(base).get("head") == "segments":
        return
    config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    if any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or []):
        if config.get("num_labels", len(config.get("id2label") or {0: 0})) != 1:
            raise LexedgeError(f"{base}: a reranker needs one logit, this model has "
                               f"{len(config.get('id2label') or {})} labels")
        return
    for adapter in adapters:
        adapter_config = json.loads((adapter / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        if adapter_config.get("task_type") == "SEQ_CLS" or adapter_config.get("modules_to_save"):
            return
    raise LexedgeError(f"{base}: not a reranker (no sequence-classification head and no "
                       "adapter that trains one); export a trained reranker stage")


def _settings(stack: list[Path], config) -> dict:
    from dataclasses import asdict

    # The trainer's defaults, so a stage reads the same settings in both places.
    settings = {**asdict(EncoderSettings()),
                "max_length": min(512, int(getattr(config, "max_position_embeddings", 512)))}
    for folder in reversed(stack):  # the top of the stack overrides what lies below
        pooling_config = folder / "1_Pooling" / "config.json"
        if pooling_config.is_file():
            pooling = json.loads(pooling_config.read_text(encoding="utf-8"))
            settings["pooling"] = "cls" if pooling.get("pooling_mode_cls_token") else "mean"
        st_config = folder / "sentence_bert_config.json"
        if st_config.is_file():
            recorded = json.loads(st_config.read_text(encoding="utf-8"))
            if recorded.get("max_seq_length"):
                settings["max_length"] = int(recorded["max_seq_length"])
        recorded = read_model_settings(folder)
        settings.update({k: recorded[k] for k in settings if k in recorded})
    if settings["head"] not in ("pooler", "mean", "segments"):
        raise LexedgeError(f"{stack[0]}: reranker head {settings['head']!r} is not supported "
                           "(pooler, mean or segments)")
    if settings["head"] == "segments" and int(settings["sep_token_id"]) < 0:
        raise LexedgeError(f"{stack[0]}: head 'segments' needs sep_token_id in "
                           f"{MODEL_SETTINGS}")
    if int(settings["separate_layers"]) and settings["head"] != "segments":
        raise LexedgeError(f"{stack[0]}: separate_layers needs head 'segments' in "
                           f"{MODEL_SETTINGS}")
    if settings["pooling"] not in ("mean", "cls"):
        raise LexedgeError(f"{stack[0]}: pooling {settings['pooling']!r} is not supported "
                           "(mean or cls)")
    return settings


def _tokenizer_file(stack: list[Path]) -> Path:
    for folder in stack:
        if (folder / "tokenizer.json").is_file():
            return folder / "tokenizer.json"
    raise LexedgeError(f"{stack[0]}: no tokenizer.json in the stage or below it "
                       f"({', '.join(str(p) for p in stack)})")


def _source(stack: list[Path], depth: int = 0) -> dict | None:
    """What the bundle records of the stage it came from: each folder of its stack (weights'
    sha256, licences, training data) down to the base model, and for a whole model made
    from another stage (a distilled student, a narrowed copy: ``derived_from`` in its
    ``lexedge_model.json``) that stage's own record under ``derived_from.source``, so the
    manifest holds the whole chain."""
    if not stack:
        return None
    folder = stack[0]
    weights = sorted(p for p in folder.iterdir()
                     if p.is_file() and p.suffix in WEIGHT_SUFFIXES and "optimizer" not in p.name)
    manifest = {}
    if (folder / STAGE_MANIFEST).is_file():  # written by lexedge train
        manifest = json.loads((folder / STAGE_MANIFEST).read_text(encoding="utf-8"))
    record = {
        "path": str(folder),
        "stage": manifest.get("stage", folder.name),
        "kind": kind_of(folder),
        "sha256": {p.name: sha256_file(p) for p in weights},
        "base": _source(stack[1:], depth),
    }
    settings = read_model_settings(folder)
    derived = settings.get("derived_from")
    if len(stack) == 1 and isinstance(derived, dict):
        record["derived_from"] = dict(derived)
        if derived.get("path") and Path(derived["path"]).is_dir():
            from lexedge.trainer.lora import MAX_STACK, stage_chain

            if depth >= MAX_STACK:
                raise LexedgeError(f"{folder}: models derived from one another form a loop "
                                   f"or a chain deeper than {MAX_STACK}")
            record["derived_from"]["source"] = _source(stage_chain(derived["path"]),
                                                       depth + 1)
    # what a bundle's card tells of a stage: its licences and the data it trained on
    licences = settings.get("licences")
    if licences:
        record["licences"] = licences
    data = manifest.get("data")
    if data:
        record["data"] = {"dataset": Path(str(data.get("dir", ""))).name,
                          "split": data.get("train_split"), "examples": data.get("examples")}
    return record


def _metrics(stack: list[Path]) -> dict | None:
    found = {}
    for folder in stack:
        file = folder / STAGE_METRICS
        if file.is_file():
            try:
                found[str(folder)] = json.loads(file.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise LexedgeError(f"{file}: malformed JSON ({exc.msg})") from None
    return found or None
