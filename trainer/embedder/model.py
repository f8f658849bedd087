"""The embedder: a Hugging Face encoder, pooled and normalised as its ``lexedge_model.json``
says (mean pooling and ``query: ``/``passage: `` prefixes for E5: Wang et al., 2024,
arXiv:2402.05672), batched encoding, and a stage folder loaded ready to encode.
:mod:`lexedge.trainer.embedder.family` trains it through the curriculum;
:mod:`lexedge.export.onnx_export` exports the same pooling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lexedge.runtime.errors import LexedgeError
from lexedge.trainer.backbone import load_tokenizer, masked_mean, run_batched
from lexedge.trainer.lora import load_stage_backbone
from lexedge.trainer.stage import EncoderSettings, stage_eval_lengths


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


@dataclass
class StageEmbedder:
    """An embedder stage ready to encode: the model, its tokenizer and settings, and the
    lengths it was evaluated (and will be served) at."""

    embedder: Embedder
    tokenizer: object
    settings: EncoderSettings
    chain: list
    query_length: int
    passage_length: int


def load_stage_embedder(folder, device) -> StageEmbedder:
    """A stage folder (its adapter stack merged) or a base model folder, in eval mode."""
    backbone, chain = load_stage_backbone(folder, device=device)
    settings = EncoderSettings.read(chain)
    query_length, passage_length = stage_eval_lengths(chain, settings)
    return StageEmbedder(Embedder(backbone, settings).eval(), load_tokenizer(chain), settings,
                         chain, query_length, passage_length)
