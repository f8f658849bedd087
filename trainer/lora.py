"""LoRA stacks: each curriculum stage trains a new adapter on the previous stages' merged
weights (2602.00805, section 3.5 deploys such a stack; LoRA: Hu et al., 2021,
arXiv:2106.09685).

A stack is a chain of stage folders (their format: :mod:`lexedge.trainer.stage`), each naming
the stage below it, down to a full model folder or a built-in base name. A stage saves its
adapter together with every adapter below it as one peft adapter over the base model
(:func:`save_stage_adapter`), so rebuilding a stage is one
``PeftModel.from_pretrained(base, stage).merge_and_unload()`` — ``W ← W + B A`` — in lexedge
(:func:`load_stage_backbone`: the next stage, ``lexedge eval --model``, ``lexedge grid``,
``lexedge.export.merge``) and in stock peft alike. Runs written before issue 23 hold one delta
per stage; those are merged one after another, bottom up. Moving a run folder keeps it
loadable because stages name each other by relative paths.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from lexedge.runtime.errors import LexedgeError
from lexedge.trainer.backbone import load_backbone
from lexedge.trainer.base_models import BUILTIN_BASE_MODELS, resolve_base_model
from lexedge.trainer.stage import (ADAPTER_CONFIG, ADAPTER_WEIGHTS, below_reference, is_adapter,
                                   is_cumulative, read_adapter_config, read_stack,
                                   write_adapter)

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
    for adapter in reversed(stack_deltas(chain)):
        model = merge_adapter(model, adapter)
    return model, chain


def stack_deltas(chain: list[Path]) -> list[Path]:
    """The adapters of ``chain`` (top first) that together hold its stack over the base: down
    to the first that holds every stage below it (issue 23), or all of them in runs written
    before."""
    adapters = []
    for folder in chain:
        if not is_adapter(folder):
            break
        adapters.append(folder)
        if is_cumulative(folder):
            break
    return adapters


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


# -- saving a stage: one peft adapter for the whole stack ---------------------------------------
LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<matrix>[AB])\.weight$")
PEFT_PREFIX = "base_model.model."


def save_stage_adapter(peft_model, out_dir: Path, chain: list[Path]) -> None:
    """Save a new stage's adapter, trained on top of ``chain`` (``[below, ..., base]``), as
    one peft adapter for the whole stack, relative to the base model (issue 23).

    Stacked LoRA deltas add up: ``W0 + s1 B1 A1 + s2 B2 A2 = W0 + [s1 B1 | s2 B2] [A1; A2]``,
    so the stack is written as a single adapter of rank ``r1 + r2 + …`` with each stage's
    scale folded into its ``B`` and ``lora_alpha = r`` (scale 1); modules a stage did not
    target get zero rows and columns, which add nothing. Stock peft then loads a stage folder
    by itself: ``PeftModel.from_pretrained(base, stage_dir)``; its ``base_model_name_or_path``
    is the base model's folder. lexedge's own references (the stage below and the base, by
    relative path or built-in name, so a moved run still loads) go to ``lexedge_stack.json``.
    A reranker's fully trained head (``modules_to_save``) is this stage's.
    """
    from safetensors.torch import load_file

    peft_model.save_pretrained(str(out_dir), safe_serialization=True)
    own_config = read_adapter_config(out_dir)
    own = load_file(str(Path(out_dir) / ADAPTER_WEIGHTS))
    below = stack_deltas(chain)
    parts = [_lora_part(own_config, own, out_dir)] + [
        _lora_part(read_adapter_config(folder), load_file(str(folder / ADAPTER_WEIGHTS)), folder)
        for folder in below]
    stages = 1 + sum(read_stack(folder).get("stages", 1) if is_cumulative(folder) else 1
                     for folder in below)
    base = next(folder for folder in chain if not is_adapter(folder))
    tensors, rank = _concatenate(parts)
    tensors.update({k: v for k, v in own.items() if not LORA_KEY.match(k)})  # the head
    config = {**own_config, "r": rank, "lora_alpha": rank, "use_rslora": False,
              "rank_pattern": {}, "alpha_pattern": {}, "lora_dropout": 0.0,
              "layers_to_transform": None, "layers_pattern": None,
              "target_modules": sorted({LORA_KEY.match(k)["module"].removeprefix(PEFT_PREFIX)
                                        for k in tensors if LORA_KEY.match(k)}),
              "base_model_name_or_path": str(Path(base).resolve())}
    write_adapter(out_dir, config, tensors, stack={
        "below": stack_reference(chain[0], out_dir), "base": stack_reference(base, out_dir),
        "stages": stages, "rank": rank})


def stack_reference(folder: Path, out_dir: Path) -> str:
    """How a stage names a folder below it: ``../stage1`` for a sibling (``out_dir`` may be a
    staging folder beside its final name, so siblings are judged by parent), a built-in base
    by its name (portable between machines), anything else by its absolute path."""
    folder = Path(folder).resolve()
    if folder.parent == Path(out_dir).resolve().parent:
        return f"../{folder.name}"
    for name, cached in BUILTIN_BASE_MODELS.items():
        if folder == (default_model_cache() / cached).resolve():
            return name
    return str(folder)


def _lora_part(config: dict, tensors: dict, folder: Path) -> dict:
    """``{module: (A, scale * B)}`` of one saved adapter, in float32."""
    if config.get("rank_pattern") or config.get("alpha_pattern") or config.get("use_dora"):
        raise LexedgeError(f"{folder / ADAPTER_CONFIG}: rank or alpha patterns and DoRA "
                           "cannot be stacked into one adapter")
    r = int(config["r"])
    scale = config["lora_alpha"] / (math.sqrt(r) if config.get("use_rslora") else r)
    matrices: dict[str, dict] = {}
    for key, tensor in tensors.items():
        found = LORA_KEY.match(key)
        if found:
            matrices.setdefault(found["module"], {})[found["matrix"]] = tensor.float()
    return {module: (ab["A"], ab["B"] * scale) for module, ab in matrices.items()}


def _concatenate(parts: list[dict]) -> tuple[dict, int]:
    """One rank-``R`` LoRA per module from every part's matrices (zero-padded to ``R``)."""
    import torch

    modules = sorted(set().union(*parts))
    ranks = {m: sum(p[m][0].shape[0] for p in parts if m in p) for m in modules}
    rank = max(ranks.values())
    tensors = {}
    for module in modules:
        a = torch.cat([p[module][0] for p in parts if module in p], dim=0)
        b = torch.cat([p[module][1] for p in parts if module in p], dim=1)
        pad = rank - a.shape[0]
        tensors[f"{module}.lora_A.weight"] = torch.nn.functional.pad(a, (0, 0, 0, pad))
        tensors[f"{module}.lora_B.weight"] = torch.nn.functional.pad(b, (0, pad))
    return tensors, rank
