"""The stage folder: the contract between training and export. ``lexedge train`` writes one per
finished stage; the next stage, ``lexedge eval --model``, ``lexedge grid`` and
:mod:`lexedge.export.merge` read it. This module names its files and owns their writers and
readers; every other module imports it (issue 18).

Stage folder format::

    runs/stard/stage2/
      adapter_config.json        peft's; base_model_name_or_path names the stage below:
                                 a path relative to this folder ("../stage1"), an absolute
                                 model folder, or a built-in base name ("default")
      adapter_model.safetensors  this stage's LoRA matrices only
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
from lexedge.runtime.storage import write_json_atomic
from lexedge.trainer.config import STAGES
from lexedge.trainer.config_loader import save_config

ADAPTER_CONFIG = "adapter_config.json"
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


# -- adapter_config.json ------------------------------------------------------------------------
def save_adapter(peft_model, out_dir: Path, below: Path) -> None:
    """Save the adapter and point it at the stage below by a relative path."""
    peft_model.save_pretrained(str(out_dir), safe_serialization=True)
    (out_dir / "README.md").unlink(missing_ok=True)  # peft's empty model-card template
    config_path = out_dir / ADAPTER_CONFIG
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = _reference(below, out_dir)
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                           encoding="utf-8")


def _reference(below: Path, out_dir: Path) -> str:
    """``../stage1`` for a sibling stage (out_dir may be a staging folder beside its final
    name, so siblings are judged by parent), otherwise the absolute path."""
    below = Path(below).resolve()
    if below.parent == Path(out_dir).resolve().parent:
        return f"../{below.name}"
    return str(below)


def is_adapter(folder: Path) -> bool:
    return (Path(folder) / ADAPTER_CONFIG).is_file()


def kind_of(folder: Path) -> str:
    """``lora-adapter`` or ``model``, as manifests name a folder of a chain."""
    return "lora-adapter" if is_adapter(folder) else "model"


def below_reference(adapter_folder: Path) -> str:
    """What an adapter stage names as the stage below it (its ``base_model_name_or_path``)."""
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
    write_json_atomic(Path(folder) / STAGE_METRICS, metrics)


def hard_negatives_path(folder: Path) -> Path:
    return Path(folder) / HARD_NEGATIVES
