"""Surgery on the reranker's starting encoder, before its first stage: an embedder stage's
LoRA stack merged into a plain model folder (the reranker then starts from the domain-trained
encoder), and an encoder cut to its first N layers (a shallower cross-encoder is what a
laptop can afford per query). :meth:`RerankerFamily.prepare_base
<lexedge.trainer.reranker.family.RerankerFamily.prepare_base>` applies them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.storage import atomic_directory
from lexedge.trainer.lora import load_stage_backbone
from lexedge.trainer.reranker.model import quiet_transformers
from lexedge.trainer.stage import copy_model_files, record_model_settings


def truncate_encoder(source: Path, out: Path, layers: int) -> Path:
    """Write the first ``layers`` transformer layers of the encoder in ``source`` as a model
    folder ``out`` (written under a temporary name, then renamed), with its tokenizer and
    settings; an existing complete ``out`` is reused."""
    from transformers import AutoConfig, AutoModel

    if _complete_model(out):
        return out
    config = AutoConfig.from_pretrained(str(source))
    total = int(getattr(config, "num_hidden_layers", 0))
    if not 0 < layers <= total:
        raise LexedgeError(f"base_layers = {layers}: {source} has {total} layers")
    config.num_hidden_layers = layers
    options = {"add_pooling_layer": False} if config.model_type == "bert" else {}
    with quiet_transformers():  # the dropped layers are "unexpected" keys, on purpose
        model = AutoModel.from_pretrained(str(source), config=config, dtype=torch.float32,
                                          **options)
    return _save_encoder(model, [source], out, {"path": str(source), "layers_kept": layers,
                                                "layers_total": total})


def merge_embedder_stage(stage: Path, out: Path, cache_dir=None) -> Path:
    """Write a trained embedder stage, its LoRA stack merged, as a plain model folder ``out``
    (temporary name, then renamed; an existing complete ``out`` is reused): the starting
    encoder of a reranker that begins from the domain-trained embedder instead of the base.

    An embedder's adapters name ``BertModel``'s modules, a cross-encoder's the modules of
    ``BertForSequenceClassification`` (``bert.`` in front): merged here with the embedder's
    own loader, they cannot silently fail to apply."""
    if _complete_model(out):
        return out
    model, chain = load_stage_backbone(stage, cache_dir=cache_dir)
    return _save_encoder(model, chain, out, {"path": str(stage), "merged": [str(c)
                                                                          for c in chain]})


def _complete_model(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def _save_encoder(model, chain: list[Path], out: Path, derived_from: dict) -> Path:
    """``model`` with the nearest tokenizer files and settings of ``chain``, atomically."""
    with atomic_directory(out, kind="model") as staging:
        model.save_pretrained(str(staging), safe_serialization=True)
        copy_model_files([Path(c) for c in chain], staging)
        record_model_settings(staging, {"derived_from": derived_from})
    return out
