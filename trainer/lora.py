"""LoRA stacks: each curriculum stage trains a new adapter on the previous stages' merged
weights (2602.00805, section 3.5 deploys such a stack; LoRA: Hu et al., 2021,
arXiv:2106.09685).

A stack is a chain of stage folders (their format: :mod:`lexedge.trainer.stage`), each
adapter naming the stage below it, down to a full model folder or a built-in base name.
Rebuilding a stage: load the base model, then for each adapter from the bottom up
``PeftModel.from_pretrained(model, adapter).merge_and_unload()`` —
``W ← W + (alpha / r) B A`` — which is what :func:`load_stage_backbone` does for the next
stage, for ``lexedge eval --model``, for ``lexedge grid`` and for ``lexedge.export.merge``.
Moving a run folder keeps it loadable because stages name each other by relative paths.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from lexedge.runtime.errors import LexedgeError
from lexedge.trainer.backbone import load_backbone
from lexedge.trainer.base_models import BUILTIN_BASE_MODELS, resolve_base_model
from lexedge.trainer.stage import ADAPTER_CONFIG, below_reference, is_adapter

MAX_STACK = 16


def default_model_cache() -> Path:
    """``$LEXEDGE_MODEL_CACHE`` or ``~/.cache/lexedge/models``: where built-in bases land."""
    return Path(os.environ.get("LEXEDGE_MODEL_CACHE")
                or Path.home() / ".cache" / "lexedge" / "models")


def resolve_model(name_or_path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """A stage or model folder for a path, or a built-in base name imported on first use."""
    name = str(name_or_path)
    if name in BUILTIN_BASE_MODELS:
        return resolve_base_model(name, cache_dir or default_model_cache())
    path = Path(name).expanduser()
    if not is_adapter(path) and not (path / "config.json").is_file():
        raise LexedgeError(f"{path}: neither a model folder (config.json) nor a LoRA stage "
                           f"({ADAPTER_CONFIG})")
    return path.resolve()


def stage_chain(top: str | Path, cache_dir: str | Path | None = None) -> list[Path]:
    """Folders from ``top`` down to its base model: ``[top, ..., base model]``."""
    chain = [resolve_model(top, cache_dir)]
    while is_adapter(chain[-1]):
        config_path = chain[-1] / ADAPTER_CONFIG
        below = below_reference(chain[-1])
        relative = chain[-1] / str(below)
        folder = resolve_model(relative if relative.is_dir() else below, cache_dir)
        if folder in chain or len(chain) >= MAX_STACK:
            raise LexedgeError(f"{config_path}: stages form a loop or a stack deeper than "
                               f"{MAX_STACK}")
        chain.append(folder)
    return chain


def load_stage_backbone(top: str | Path, *, cache_dir=None, device=None,
                        load_in_4bit: bool = False, loader=None):
    """The backbone of stage ``top`` with every adapter of its stack merged in.

    Args:
        top: a stage or model folder, or a built-in base name.
        cache_dir: where built-in bases are imported.
        device: where to load.
        load_in_4bit: QLoRA loading of the base (adapters then merge into 4-bit weights,
            which re-quantises them: fine for training the next adapter, not for export).
        loader: ``(folder, load_in_4bit=..., device=...) -> model``; the embedder's
            :func:`~lexedge.trainer.backbone.load_backbone` by default, a reranker passes
            its own.

    Returns:
        ``(backbone, chain)``: a plain model and the folders it was built from.
    """
    chain = stage_chain(top, cache_dir)
    model = (loader or load_backbone)(chain[-1], load_in_4bit=load_in_4bit, device=device)
    for adapter in reversed(chain[:-1]):
        model = merge_adapter(model, adapter)
    return model, chain


def merge_adapter(model, adapter_dir: str | Path):
    """Fold one saved adapter into ``model``'s weights (exact in float32)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()


def target_pattern(target_modules: list[str], layers: list[int]) -> str:
    """A peft ``target_modules`` regex: the named projections inside transformer blocks only
    (never a pooler's or a classifier's ``dense``), optionally only in ``layers``."""
    modules = "|".join(re.escape(m) for m in target_modules)
    indices = "|".join(str(int(i)) for i in layers) if layers else r"\d+"
    return rf"(?:.*\.)?(?:layer|layers|h|block)\.(?:{indices})\.(?:.*\.)?(?:{modules})"


def attach_lora(backbone, settings, *, modules_to_save: list[str] | None = None,
                task_type: str | None = None):
    """Wrap ``backbone`` with a fresh trainable adapter; everything else is frozen.

    Args:
        backbone: the merged model of the stages below.
        settings: a :class:`~lexedge.trainer.config.LoraSettings`.
        modules_to_save: modules trained in full and saved with the adapter (a reranker's
            fresh classification head).
        task_type: peft task type (``SEQ_CLS`` for a reranker), None for a bare encoder.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha,
                        lora_dropout=settings.dropout,
                        target_modules=target_pattern(settings.target_modules, settings.layers),
                        modules_to_save=modules_to_save, task_type=task_type, bias="none")
    try:
        return get_peft_model(backbone, config)
    except ValueError as exc:
        raise LexedgeError(f"LoRA: {exc}") from None
