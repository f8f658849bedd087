"""The encoder under both models: a Hugging Face encoder and its tokenizer loaded from a
model folder, the device and 4-bit (QLoRA) choices, and batched inference in eval mode. The
embedder (:mod:`lexedge.trainer.embedder.model`) pools it into vectors, the reranker
(:mod:`lexedge.trainer.reranker.model`) reads a logit from it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from lexedge.runtime.errors import LexedgeError

# Encoders whose AutoModel takes ``add_pooling_layer``: mean/CLS pooling never uses the
# pooler, and E5's imported weights have none (it would be initialised at random).
POOLER_MODEL_TYPES = {"bert", "roberta", "xlm-roberta", "camembert"}


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden``'s token vectors where ``mask`` ([batch, tokens]) is set."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present; under torchrun each rank takes its ``LOCAL_RANK``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise LexedgeError("runtime.device = cuda but no CUDA device is available")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(name)


def autocast(device: torch.device, bf16: bool):
    """bfloat16 autocast on CUDA; a no-op context on CPU (no fast bf16 on AVX2 CPUs)."""
    enabled = bf16 and device.type == "cuda"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def load_backbone(folder: str | Path, *, load_in_4bit: bool = False,
                  device: torch.device | None = None):
    """A plain encoder (``AutoModel``) in float32, without a pooler where that is optional.

    Args:
        folder: a Hugging Face model folder.
        load_in_4bit: QLoRA loading (NF4 weights, bf16 compute) through bitsandbytes; needs
            CUDA and ``pip install bitsandbytes``.
        device: where to place it.
    """
    from transformers import AutoConfig, AutoModel

    folder = str(folder)
    config = AutoConfig.from_pretrained(folder)
    options = {"dtype": torch.float32}
    if config.model_type in POOLER_MODEL_TYPES:
        options["add_pooling_layer"] = False
    if load_in_4bit:
        options.update(four_bit_options(device))
    try:
        model = AutoModel.from_pretrained(folder, **options)
    except (OSError, ValueError) as exc:
        raise LexedgeError(f"{folder}: cannot load as an encoder ({exc})") from None
    return place_model(model, load_in_4bit=load_in_4bit, device=device)


def place_model(model, *, load_in_4bit: bool, device):
    """A freshly loaded model made ready: prepared for k-bit training when loaded in 4-bit
    (already placed by its device map), else moved to ``device``."""
    if load_in_4bit:
        from peft import prepare_model_for_kbit_training

        return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return model.to(device) if device is not None else model


def four_bit_options(device) -> dict:
    """QLoRA: frozen NF4 base, bf16 compute (Dettmers et al., 2023, arXiv:2305.14314)."""
    if device is None or device.type != "cuda":
        raise LexedgeError("runtime.load_in_4bit needs a CUDA device (bitsandbytes' 4-bit "
                           "layers only save memory there)")
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError:
        raise LexedgeError("runtime.load_in_4bit needs bitsandbytes: "
                           'pip install "lexedge[gpu]"') from None
    return {"quantization_config": BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16), "device_map": {"": device.index or 0}}


def load_tokenizer(folders: list[Path]):
    """The nearest folder holding a tokenizer (a stage's own copy, else the one below)."""
    from transformers import AutoTokenizer

    for folder in folders:
        if (Path(folder) / "tokenizer.json").is_file() or \
                (Path(folder) / "tokenizer_config.json").is_file():
            return AutoTokenizer.from_pretrained(str(folder))
    raise LexedgeError(f"{folders[0]}: no tokenizer in the stage or below it")


@torch.no_grad()
def run_batched(model: torch.nn.Module, count: int, length_of, forward, *, batch_size: int,
                bf16: bool = False, progress: bool = False,
                description: str = "") -> np.ndarray | None:
    """``forward(rows, device)`` over ``count`` inputs in eval mode, batched longest first
    (``length_of(i)``: little padding, and the first batch shows the worst-case memory);
    float32 rows back in the input order (``None`` for no input)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    order = sorted(range(count), key=lambda i: -length_of(i))
    batches = range(0, count, batch_size)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc=description, unit="batch", mininterval=5, leave=False)
    out = None
    try:
        for start in batches:
            rows = order[start:start + batch_size]
            with autocast(device, bf16):
                values = forward(rows, device).float().cpu().numpy()
            if out is None:
                out = np.zeros((count, *values.shape[1:]), dtype=np.float32)
            out[rows] = values
    finally:
        model.train(was_training)
    return out
