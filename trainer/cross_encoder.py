"""The cross-encoder: an encoder over ``query [SEP] passage`` with one logit per pair, the
heads that logit can read, and batched scoring. :mod:`lexedge.trainer.reranker` trains it
through the curriculum; :mod:`lexedge.export.onnx_export` exports the same computation.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import torch

from lexedge.runtime.errors import LexedgeError
from lexedge.trainer.modeling import (MODEL_SETTINGS, EncoderSettings, four_bit_options,
                                      masked_mean, place_model, run_batched)


class CrossEncoder(torch.nn.Module):
    """A sequence-classification model with one label: pairs in, one logit per pair out.

    ``settings.head`` says what the logit reads: ``pooler``, the model's own head (CLS
    through BERT's pooler); ``mean``, the model's classifier over the mean of the last
    layer's tokens (E5's pooling, Wang et al., 2024, arXiv:2402.05672: its pretrained
    representation is the mean, and it ships no pooler weights); or ``segments``, the
    cosine of the query's and the passage's token means within the joint encoding over
    ``settings.head_temperature`` (no fresh weights: the encoder's contrastive training
    makes it a reranker from the first step).
    """

    def __init__(self, model, settings: EncoderSettings):
        super().__init__()
        self.model = model
        self.settings = settings
        if settings.head == "mean":
            mean_head_parts(model)  # refuse a model without one, before any training

    def forward(self, **inputs) -> torch.Tensor:
        if self.settings.head == "segments":
            return segment_cosine_logits(encoder_of(self.model), **inputs,
                                         sep_token_id=self.settings.sep_token_id,
                                         temperature=self.settings.head_temperature).float()
        if self.settings.head != "mean":
            return self.model(**inputs).logits[:, 0].float()
        encoder, dropout, classifier = mean_head_parts(self.model)
        return mean_head_logits(encoder, dropout, classifier, **inputs).float()


def unwrapped(model):
    """The Hugging Face model inside a peft wrapper (itself when there is none)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def encoder_of(model):
    """The encoder inside a sequence classifier (unwrapped from peft)."""
    hf_model = unwrapped(model)
    return getattr(hf_model, hf_model.base_model_prefix)


def segment_cosine_logits(encoder, input_ids, attention_mask, token_type_ids=None, *,
                          sep_token_id: int, temperature: float) -> torch.Tensor:
    """Cosine of the mean of the query's tokens (before the first separator, ``[CLS]`` or
    ``<s>`` included) and the mean of the passage's (after it, separators excluded) in one
    joint encoding, over ``temperature`` (shared with the exported graph)."""
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask,
                     token_type_ids=token_type_ids).last_hidden_state
    is_sep = input_ids == sep_token_id
    seen = torch.cumsum(is_sep.to(torch.int64), dim=1)
    valid = attention_mask.bool()
    query_mean = masked_mean(hidden, (seen == 0) & valid)
    passage_mean = masked_mean(hidden, (seen >= 1) & ~is_sep & valid)
    return torch.nn.functional.cosine_similarity(query_mean, passage_mean, dim=-1) / temperature


def mean_head_parts(model):
    """The encoder, dropout and linear classifier of a BERT-style sequence classifier
    (unwrapped from peft when it is an adapter stack)."""
    hf_model = unwrapped(model)
    classifier = getattr(hf_model, "classifier", None)
    linear = getattr(classifier, "original_module", classifier)  # peft's modules_to_save
    if not isinstance(linear, torch.nn.Linear):
        raise LexedgeError(f"head = 'mean' needs a model whose classifier is one linear layer "
                           f"(BERT-style); {type(hf_model).__name__} has "
                           f"{type(linear).__name__}")
    return encoder_of(hf_model), getattr(hf_model, "dropout", torch.nn.Identity()), classifier


def mean_head_logits(encoder, dropout, classifier, input_ids, attention_mask,
                     token_type_ids=None) -> torch.Tensor:
    """One logit per pair from the mean of the last layer's unmasked tokens (shared with the
    exported graph, so the served reranker computes exactly this)."""
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask,
                     token_type_ids=token_type_ids).last_hidden_state
    return classifier(dropout(masked_mean(hidden, attention_mask)))[:, 0]


def load_cross_encoder(folder: str | Path, *, load_in_4bit: bool = False, device=None):
    """A one-logit ``AutoModelForSequenceClassification`` in float32 (head fresh when the
    folder has none)."""
    from transformers import AutoModelForSequenceClassification

    options = {"dtype": torch.float32, "num_labels": 1}
    if load_in_4bit:
        options.update(four_bit_options(device))
    try:
        with quiet_transformers():  # the fresh head is expected, not worth a warning
            model = AutoModelForSequenceClassification.from_pretrained(str(folder), **options)
    except (OSError, ValueError) as exc:
        raise LexedgeError(f"{folder}: cannot load as a cross-encoder ({exc})") from None
    return place_model(model, load_in_4bit=load_in_4bit, device=device)


@contextlib.contextmanager
def quiet_transformers():
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


def recorded_head(chain: list[Path]) -> str | None:
    """The head the nearest trained stage of ``chain`` recorded (``None`` below the first
    stage: a base model has no head yet)."""
    return recorded_head_entries(chain).get("head")


def recorded_head_entries(chain: list[Path]) -> dict:
    """``lexedge_model.json`` of the nearest folder of ``chain`` that records a head ({} if
    none does): the head and, for ``segments``, its temperature and separator."""
    for folder in chain:
        path = Path(folder) / MODEL_SETTINGS
        if path.is_file():
            recorded = json.loads(path.read_text(encoding="utf-8"))
            if "head" in recorded:
                return recorded
    return {}


def tokenize_pairs(tokenizer, settings: EncoderSettings, queries: list[str],
                   passages: list[str], max_length: int, device) -> dict:
    """``query [SEP] passage`` with the model's prefixes, truncated longest first (as
    :class:`lexedge.runtime.onnx_models.OnnxReranker` does when serving)."""
    batch = tokenizer([settings.query_prefix + q for q in queries],
                      [settings.passage_prefix + p for p in passages], max_length=max_length,
                      truncation="longest_first", padding=True, return_tensors="pt")
    keep = ("input_ids", "attention_mask", "token_type_ids")
    return {k: v.to(device) for k, v in batch.items() if k in keep}


def score_pairs(model: CrossEncoder, tokenizer, pairs: list[tuple[str, str]], *,
                max_length: int, batch_size: int = 32, bf16: bool = False,
                progress: bool = False, description: str = "scoring pairs") -> np.ndarray:
    """Logits of ``(query, passage)`` pairs in input order, batched longest first."""
    out = run_batched(
        model, len(pairs), lambda i: len(pairs[i][0]) + len(pairs[i][1]),
        lambda rows, device: model(**tokenize_pairs(
            tokenizer, model.settings, [pairs[i][0] for i in rows],
            [pairs[i][1] for i in rows], max_length, device)),
        batch_size=batch_size, bf16=bf16, progress=progress, description=description)
    return np.zeros(0, dtype=np.float32) if out is None else out
