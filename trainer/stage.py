"""The stage folder: the contract between training and export. ``lexedge train`` writes one per
finished stage; the next stage, ``lexedge eval --model``, ``lexedge grid`` and
:mod:`lexedge.export.merge` read it. This module names its files and owns their writers and
readers; every other module imports it (issue 18).

Stage folder format::

    runs/stard/stage2/
      adapter_config.json        peft's, for the whole stack: base_model_name_or_path is
      adapter_model.safetensors  the base model's folder, and the matrices are every stage's
                                 concatenated (rank r1 + r2 + ..., scales folded into B), so
                                 PeftModel.from_pretrained(base, "stage2") is this stage
      lexedge_stack.json         the stage below ("../stage1": relative to this folder, a
                                 built-in base name, or an absolute folder) and the base, so a
                                 moved run still loads; runs written before it name the stage
                                 below in base_model_name_or_path and hold their own delta only
      README.md                  model card: base model and licences, training data, stack,
                                 dev metrics, and how to load the folder with stock peft
      (mode = "full" instead: config.json + model.safetensors, a whole model; the stack
       ends there)
      tokenizer.json, tokenizer_config.json   copies, so the folder loads standalone
      lexedge_model.json         pooling, normalize, prefixes, max_length (from the base),
                                 a reranker's head: :class:`EncoderSettings`
      lexedge_stage.json         manifest: format, family, stage, mode, chain (this folder
                                 down to the base model, each with its kind and weight
                                 sha256), seed, provenance (lexedge.runtime.provenance: the
                                 command, when, versions, and the sha256 of corpus, queries
                                 and qrels as its inputs), hardware, training statistics,
                                 wall time
      train_config.json          the resolved run configuration
      metrics.json               its dev metrics, written once evaluated
      hard_negatives.jsonl       the negatives it trained on (the last epoch's for stage 3)

A stage folder appears in one rename once its stage finished, so "is this stage done" is
"does its folder hold ``lexedge_stage.json``" (:func:`is_complete`). A base model folder
(:mod:`lexedge.trainer.base_models`) carries ``lexedge_model.json`` too; the run folder
above the stages carries ``train_config.json``. Walking a stack down to its base and merging
it is :mod:`lexedge.trainer.lora`'s.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.model_card import (CARD_FILE, licence_lines, metrics_rows, render, table,
                                        upstream_licence, write)
from lexedge.runtime.storage import write_json_atomic
from lexedge.trainer.config import STAGES
from lexedge.trainer.config_loader import save_config

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
STACK_FILE = "lexedge_stack.json"
STACK_FORMAT = "lexedge-stack/1"
MODEL_SETTINGS = "lexedge_model.json"
STAGE_MANIFEST = "lexedge_stage.json"
STAGE_FORMAT = "lexedge-stage/1"
CONFIG_FILE = "train_config.json"
STAGE_METRICS = "metrics.json"
HARD_NEGATIVES = "hard_negatives.jsonl"
# What a new stage copies from the nearest folder below it that has them.
COPIED_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                "sentencepiece.bpe.model", "vocab.txt", MODEL_SETTINGS, "NOTICE")


# -- lexedge_model.json -------------------------------------------------------------------------
@dataclass
class EncoderSettings:
    """How text becomes a vector (or a pair a logit): read from ``lexedge_model.json``."""

    pooling: str = "mean"
    normalize: bool = True
    query_prefix: str = ""
    passage_prefix: str = ""
    max_length: int = 512
    head: str = "pooler"  # a reranker's: "pooler", "mean" or "segments" (reranker/model.py)
    head_temperature: float = 0.05  # "segments": the logit is the cosine over this
    sep_token_id: int = -1  # "segments": the separator between query and passage
    separate_layers: int = 0  # "segments": lower layers that encode each side alone
    cross_attention_bias: float = 0.0  # added to query-passage attention above them
    cls_token_id: int = -1  # what a separator that opens the passage is read as

    @classmethod
    def read(cls, folders: list[Path]) -> "EncoderSettings":
        """The nearest ``lexedge_model.json`` wins (``folders`` top of a stack first)."""
        for folder in folders:
            path = Path(folder) / MODEL_SETTINGS
            if path.is_file():
                return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        return cls()

    @classmethod
    def from_dict(cls, recorded: dict) -> "EncoderSettings":
        """The fields found in a ``lexedge_model.json`` or an export's settings dict."""
        return cls(**{k: recorded[k] for k in cls.__dataclass_fields__ if k in recorded})


def read_model_settings(folder: Path) -> dict:
    """``folder``'s own ``lexedge_model.json`` ({} when it has none)."""
    path = Path(folder) / MODEL_SETTINGS
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def record_model_settings(folder: Path, entries: dict) -> None:
    """Merge ``entries`` into ``folder``'s ``lexedge_model.json`` (written atomically)."""
    if not entries:
        return
    settings = read_model_settings(folder)
    settings.update(entries)
    write_json_atomic(Path(folder) / MODEL_SETTINGS, settings)


def recorded_head(chain: list[Path]) -> str | None:
    """The head the nearest trained stage of ``chain`` recorded (``None`` below the first
    stage: a base model has no head yet)."""
    return recorded_head_entries(chain).get("head")


def recorded_head_entries(chain: list[Path]) -> dict:
    """``lexedge_model.json`` of the nearest folder of ``chain`` that records a head ({} if
    none does): the head and, for ``segments``, its temperature and separator."""
    for folder in chain:
        recorded = read_model_settings(folder)
        if "head" in recorded:
            return recorded
    return {}


def copy_model_files(chain: list[Path], out_dir: Path) -> None:
    """Tokenizer and model settings from the nearest folder that has them."""
    for file in COPIED_FILES:
        for folder in chain:
            if (folder / file).is_file():
                shutil.copyfile(folder / file, out_dir / file)
                break


# -- adapter_config.json, adapter_model.safetensors, lexedge_stack.json ------------------------
def read_adapter_config(folder: Path) -> dict:
    path = Path(folder) / ADAPTER_CONFIG
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise LexedgeError(f"{path}: cannot read it ({exc})") from None


def write_adapter(out_dir: Path, config: dict, tensors: dict, stack: dict) -> None:
    """peft's two files for the whole stack and ``lexedge_stack.json`` beside them (composed
    by :func:`lexedge.trainer.lora.save_stage_adapter`)."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    (out_dir / CARD_FILE).unlink(missing_ok=True)  # peft's empty template (write_card's)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out_dir / ADAPTER_WEIGHTS),
              metadata={"format": "pt"})
    (out_dir / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, ensure_ascii=False)
                                          + "\n", encoding="utf-8")
    write_json_atomic(out_dir / STACK_FILE, {"format": STACK_FORMAT, "adapter": "cumulative",
                                             **stack})


def read_stack(folder: Path) -> dict | None:
    path = Path(folder) / STACK_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LexedgeError(f"{path}: malformed JSON ({exc.msg})") from None


def is_cumulative(folder: Path) -> bool:
    """Does this adapter hold every stage below it (written since issue 23), rather than only
    its own delta over the merged stage below (earlier runs)?"""
    return (read_stack(folder) or {}).get("adapter") == "cumulative"


def is_adapter(folder: Path) -> bool:
    return (Path(folder) / ADAPTER_CONFIG).is_file()


def kind_of(folder: Path) -> str:
    """``lora-adapter`` or ``model``, as manifests name a folder of a chain."""
    return "lora-adapter" if is_adapter(folder) else "model"


def below_reference(adapter_folder: Path) -> str:
    """What an adapter stage names as the stage below it: ``lexedge_stack.json``'s ``below``,
    or, in runs written before issue 23, its ``base_model_name_or_path``."""
    stack = read_stack(adapter_folder)
    if stack and stack.get("below"):
        return stack["below"]
    config_path = Path(adapter_folder) / ADAPTER_CONFIG
    try:
        return json.loads(config_path.read_text(encoding="utf-8"))["base_model_name_or_path"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise LexedgeError(f"{config_path}: no base_model_name_or_path ({exc})") from None


# -- lexedge_stage.json, train_config.json, metrics.json, hard_negatives.jsonl ------------------
def write_manifest(folder: Path, manifest: dict) -> None:
    """``lexedge_stage.json``: ``manifest`` under this format's name (the last file a stage
    writes: its presence marks the stage finished)."""
    write_json_atomic(Path(folder) / STAGE_MANIFEST, {"format": STAGE_FORMAT, **manifest})


def is_complete(folder: Path) -> bool:
    return (Path(folder) / STAGE_MANIFEST).is_file()


def stage_folders(output_dir: str | Path) -> list[Path]:
    """The finished stage folders of a run, bottom up."""
    output_dir = Path(output_dir)
    return [output_dir / n for n in ("mlm", *STAGES) if is_complete(output_dir / n)]


def write_config(folder: Path, config) -> None:
    """The resolved configuration, saved beside what it produced (a run or a stage)."""
    save_config(config, Path(folder) / CONFIG_FILE)


def has_config(folder: Path) -> bool:
    return (Path(folder) / CONFIG_FILE).is_file()


def read_run_config(run: Path) -> dict:
    """A training run's ``train_config.json``."""
    path = Path(run) / CONFIG_FILE
    if not path.is_file():
        raise LexedgeError(f"{run}: not a training run (no {CONFIG_FILE})")
    return json.loads(path.read_text(encoding="utf-8"))


def stage_eval_lengths(chain: list[Path], settings: EncoderSettings) -> tuple[int, int]:
    """Query and passage lengths a stage was evaluated at during training (its
    ``train_config.json``), else the model's maximum."""
    for folder in chain:
        path = Path(folder) / CONFIG_FILE
        if path.is_file():
            evaluation = json.loads(path.read_text(encoding="utf-8")).get("evaluation", {})
            return (int(evaluation.get("max_query_length", 64)),
                    int(evaluation.get("max_passage_length", settings.max_length)))
    return min(settings.max_length, 512), min(settings.max_length, 512)


def write_metrics(folder: Path, metrics: dict) -> None:
    """``metrics.json``, and the card again so it shows them."""
    write_json_atomic(Path(folder) / STAGE_METRICS, metrics)
    if is_complete(folder):
        write_card(folder)


# -- README.md ----------------------------------------------------------------------------------
def write_card(folder: Path) -> None:
    """The stage's model card (``README.md``), from its own manifest, settings, stack file
    and metrics: base model and licences, training data, the stack, dev metrics, and how
    stock transformers + peft load it."""
    folder = Path(folder)
    manifest = json.loads((folder / STAGE_MANIFEST).read_text(encoding="utf-8"))
    settings = read_model_settings(folder)
    stack = read_stack(folder) or {}
    metrics = {}
    if (folder / STAGE_METRICS).is_file():
        metrics = json.loads((folder / STAGE_METRICS).read_text(encoding="utf-8"))
    family, stage, mode = manifest.get("family"), manifest.get("stage"), manifest.get("mode")
    base_name = settings.get("name") or stack.get("base") or "the base model"
    licences = settings.get("licences") or {}
    data, training = manifest.get("data") or {}, manifest.get("training") or {}
    inputs = (manifest.get("provenance") or {}).get("inputs") or {}
    reranker = family == "reranker"
    front = {"library_name": "peft" if is_adapter(folder) else "transformers",
             "base_model": base_name, "license": upstream_licence(licences),
             "tags": ["lexedge", "legal", family, "lora" if is_adapter(folder) else mode],
             "pipeline_tag": "text-classification" if reranker else "sentence-similarity"}
    lora = manifest.get("lora") or {}
    stage_settings = manifest.get("stage_settings") or {}
    trained_length = stage_settings.get("max_passage_length")
    length = f"at most {settings.get('max_length')} tokens" + (
        f" (trained on passages cut at {trained_length})" if trained_length else "")
    about = [f"A lexedge {family}, curriculum stage `{stage}` ({mode}), trained by "
             f"`{(manifest.get('provenance') or {}).get('made_by', 'lexedge train')}`.",
             f"Cross-encoder, head `{settings.get('head')}`, {length} per pair." if reranker
             else f"Pooling `{settings.get('pooling')}`, "
                  f"{'normalised' if settings.get('normalize') else 'not normalised'}, "
                  f"query prefix {settings.get('query_prefix', '')!r}, passage prefix "
                  f"{settings.get('passage_prefix', '')!r}, {length}."]
    if stack:
        count = stack.get("stages", 1)
        about.append(f"The adapter holds {'this' if count == 1 else f'all {count}'} LoRA "
                     f"stage{'' if count == 1 else 's'} down to the base "
                     f"(`{stack.get('base')}`) as one rank-{stack.get('rank')} adapter; the "
                     f"stage below is `{stack.get('below')}`. Each stage trained rank "
                     f"{lora.get('r')}, alpha {lora.get('alpha')}; the saved adapter has "
                     "every scale folded into its B matrices, so its lora_alpha equals its "
                     "rank.")
    what = f"{data['documents']} corpus documents (masked-language modelling)" \
        if "documents" in data else \
        f"split `{data.get('train_split')}`, {data.get('examples')} examples"
    trained = [f"- data: `{Path(str(data.get('dir', '?'))).name}`, {what}",
               f"- {training.get('steps')} steps"
               + (f" ({training['epochs']} epochs)" if training.get("epochs") else "") + ", "
               f"{training.get('seconds')} s, seed {manifest.get('seed')}, loss "
               f"{training.get('loss_first')} → {training.get('loss_last')}"]
    trained += [f"- input `{name}` (training and evaluation files), sha256 `{digest}`"
                for name, digest in inputs.items()]
    if stack:
        auto = "AutoModelForSequenceClassification" if reranker else "AutoModel"
        load = ["```python", f"from transformers import {auto}",
                "from peft import PeftModel", "",
                f"base = {auto}.from_pretrained(BASE)  # {_base_hint(stack.get('base'))}",
                "model = PeftModel.from_pretrained(base, STAGE_FOLDER).merge_and_unload()",
                "```"]
    else:
        load = ["```python", "from transformers import AutoModel",
                "model = AutoModel.from_pretrained(STAGE_FOLDER)", "```"]
    measured = table(metrics_rows(metrics), ("measure", "value")) if metrics else \
        ["Not evaluated (evaluation off, or not run yet)."]
    if metrics:
        measured.insert(0, f"On `{metrics.get('split', 'dev')}` "
                           f"({metrics.get('queries', '?')} queries):\n")
    write(folder / CARD_FILE, render(front, f"lexedge {family} — {stage}", [
        ("Model", about), ("Base model and licences", [f"Base: {base_name}."]
                            + licence_lines(licences)),
        ("Training", trained), ("Dev metrics", measured), ("Loading it", load)]))


def _base_hint(reference: str | None) -> str:
    if reference and "/" not in reference and not reference.startswith("."):
        return (f"lexedge's built-in {reference!r}: "
                f"lexedge.trainer.lora.resolve_model({reference!r}) gives its folder")
    return f"the folder {reference!r}, relative to this stage folder when it starts with ../"


def hard_negatives_path(folder: Path) -> Path:
    return Path(folder) / HARD_NEGATIVES
