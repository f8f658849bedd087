"""The embedder: a Hugging Face encoder, pooled and normalised as its ``lexedge_model.json``
says (mean pooling and ``query: ``/``passage: `` prefixes for E5: Wang et al., 2024,
arXiv:2402.05672), plus the device and loading choices shared by every trainer command.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lexedge.runtime.errors import LexedgeError

MODEL_SETTINGS = "lexedge_model.json"
# Encoders whose AutoModel takes ``add_pooling_layer``: mean/CLS pooling never uses the
# pooler, and E5's imported weights have none (it would be initialised at random).
POOLER_MODEL_TYPES = {"bert", "roberta", "xlm-roberta", "camembert"}


def record_model_settings(folder: Path, entries: dict) -> None:
    """Merge ``entries`` into ``folder``'s ``lexedge_model.json`` (written atomically)."""
    from lexedge.runtime.storage import write_json_atomic

    if not entries:
        return
    path = Path(folder) / MODEL_SETTINGS
    settings = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    settings.update(entries)
    write_json_atomic(path, settings)


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden``'s token vectors where ``mask`` ([batch, tokens]) is set."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


@dataclass
class EncoderSettings:
    """How text becomes a vector: read from ``lexedge_model.json``."""

    pooling: str = "mean"
    normalize: bool = True
    query_prefix: str = ""
    passage_prefix: str = ""
    max_length: int = 512
    head: str = "pooler"  # a reranker's: "pooler", "mean" or "segments" (see reranker.py)
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
                           "pip install bitsandbytes") from None
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


class Embedder(torch.nn.Module):
    """Encoder + pooling (+ L2 normalisation): text in, one vector per text out.

    Args:
        backbone: a Hugging Face encoder returning ``last_hidden_state``.
        settings: pooling, normalisation and prefixes.

    Example:
        >>> embedder = Embedder(load_backbone("models/e5-small"), settings)  # doctest: +SKIP
        >>> embedder(**tokenizer(["query: 保证合同"], return_tensors="pt")).shape
        torch.Size([1, 384])
    """

    def __init__(self, backbone, settings: EncoderSettings):
        super().__init__()
        if settings.pooling not in ("mean", "cls"):
            raise LexedgeError(f"pooling {settings.pooling!r} is not supported (mean or cls)")
        self.backbone = backbone
        self.settings = settings

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.settings.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            pooled = masked_mean(hidden, attention_mask)
        pooled = pooled.float()
        if self.settings.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled


def tokenize(tokenizer, texts: list[str], max_length: int, device) -> dict:
    batch = tokenizer(texts, max_length=max_length, truncation=True, padding=True,
                      return_tensors="pt")
    return {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}


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


def encode(embedder: Embedder, tokenizer, texts: list[str], *, max_length: int,
           batch_size: int = 32, bf16: bool = False, progress: bool = False,
           description: str = "encoding") -> np.ndarray:
    """Embed ``texts`` (prefixes already applied) as a float32 ``[len(texts), dim]`` array."""
    out = run_batched(
        embedder, len(texts), lambda i: len(texts[i]),
        lambda rows, device: embedder(**tokenize(tokenizer, [texts[i] for i in rows],
                                                 max_length, device)),
        batch_size=batch_size, bf16=bf16, progress=progress, description=description)
    if out is None:
        raise LexedgeError("nothing to encode")
    return out
