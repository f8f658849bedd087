"""The reranker: a cross-encoder over ``query [SEP] passage`` with one logit per pair, the
heads that logit can read, and batched scoring. :mod:`lexedge.trainer.reranker.family` trains
it through the curriculum; :mod:`lexedge.export.onnx_export` exports the same computation.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from lexedge.runtime.errors import LexedgeError
from lexedge.trainer.backbone import four_bit_options, masked_mean, place_model, run_batched
from lexedge.trainer.stage import EncoderSettings


class CrossEncoder(torch.nn.Module):
    """A sequence-classification model with one label: pairs in, one logit per pair out.

    ``settings.head`` says what the logit reads: ``pooler``, the model's own head (CLS
    through BERT's pooler); ``mean``, the model's classifier over the mean of the last
    layer's tokens (E5's pooling, Wang et al., 2024, arXiv:2402.05672: its pretrained
    representation is the mean, and it ships no pooler weights); or ``segments``, the
    cosine of the query's and the passage's token means within the joint encoding over
    ``settings.head_temperature`` (no fresh weights: the encoder's contrastive training
    makes it a reranker from the first step). A ``segments`` head with
    ``settings.separate_layers`` > 0 encodes the query and the passage apart in that many
    lower layers and lets only the layers above attend across the pair (see
    :func:`late_segment_logits`).
    """

    def __init__(self, model, settings: EncoderSettings):
        super().__init__()
        self.model = model
        self.settings = settings
        if settings.head == "mean":
            mean_head_parts(model)  # refuse a model without one, before any training

    def forward(self, split=None, **inputs) -> torch.Tensor:
        if split is not None:  # split attention: the layers above the split, on cached
            return split.logits(**inputs)  # lower states (a SplitStates of this model)
        if self.settings.head == "segments":
            return segments_head_logits(encoder_of(self.model), self.settings,
                                        **inputs).float()
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


def segments_head_logits(encoder, settings: EncoderSettings, input_ids, attention_mask,
                         token_type_ids=None) -> torch.Tensor:
    """The ``segments`` head as ``settings`` describes it: one joint encoding, or split lower
    layers when ``separate_layers`` > 0 (shared by the trainer and the exported graph)."""
    if settings.separate_layers > 0:
        return late_segment_logits(
            encoder, input_ids, attention_mask, sep_token_id=int(settings.sep_token_id),
            cls_token_id=int(settings.cls_token_id),
            separate_layers=int(settings.separate_layers),
            cross_attention_bias=float(settings.cross_attention_bias),
            temperature=float(settings.head_temperature))
    return segment_cosine_logits(encoder, input_ids, attention_mask, token_type_ids,
                                 sep_token_id=int(settings.sep_token_id),
                                 temperature=float(settings.head_temperature))


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


def split_pair(input_ids: torch.Tensor, attention_mask: torch.Tensor, *, sep_token_id: int,
               cls_token_id: int):
    """How a split-attention pair reads ``query [SEP] passage``: which tokens are the query's
    (up to and including the first separator), which the passage's (the rest), positions
    restarting at 0 where the passage starts, and the ids with a separator that opens the
    passage (XLM-R's ``</s></s>``) read as ``cls_token_id``. Each segment is then exactly
    the token sequence the embedder encodes on its own (``<s> query: … </s>``,
    ``<s> passage: … </s>``)."""
    is_sep = input_ids == sep_token_id
    before = torch.cumsum(is_sep.to(torch.int64), dim=1) - is_sep.to(torch.int64)
    valid = attention_mask.bool()
    query = (before == 0) & valid
    passage = (before >= 1) & valid
    index = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
    start = query.to(torch.int64).sum(dim=1, keepdim=True)  # the query is a prefix
    positions = torch.where(passage, index - start, index)
    if cls_token_id >= 0:
        input_ids = torch.where(passage & (positions == 0) & is_sep,
                                torch.full_like(input_ids, cls_token_id), input_ids)
    return query, passage, positions, input_ids


def attention_bias(segment: torch.Tensor, valid: torch.Tensor, cross: float | None,
                   dtype) -> torch.Tensor:
    """An additive attention mask [batch, 1, tokens, tokens]: 0 within a segment, ``cross``
    between the query's and the passage's tokens (``None``: not at all), never to padding."""
    floor = torch.finfo(dtype).min
    same = segment.unsqueeze(2) == segment.unsqueeze(1)
    keys = valid.unsqueeze(1)
    zero = torch.zeros((), dtype=dtype, device=segment.device)
    between = torch.full((), floor if cross is None else cross, dtype=dtype,
                         device=segment.device)
    allowed = torch.where(same, zero, between)
    return torch.where(keys, allowed, torch.full((), floor, dtype=dtype,
                                                 device=segment.device)).unsqueeze(1)


def run_layers(layers, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        hidden = layer(hidden, attention_mask=mask)
        hidden = hidden[0] if isinstance(hidden, tuple) else hidden
    return hidden


def position_offset(encoder) -> int:
    """Where position ids start: 0 for BERT, ``padding_idx + 1`` for RoBERTa-style models."""
    config = encoder.config
    if config.model_type in ("roberta", "xlm-roberta", "camembert"):
        return int(config.pad_token_id) + 1
    return 0


def late_segment_logits(encoder, input_ids, attention_mask, *, sep_token_id: int,
                        cls_token_id: int, separate_layers: int, cross_attention_bias: float,
                        temperature: float) -> torch.Tensor:
    """Split attention (PreTTR: MacAvaney et al., 2020, arXiv:2004.14255): the first
    ``separate_layers`` layers encode the query and the passage each on its own (as the
    bi-encoder does), the layers above attend across the pair with ``cross_attention_bias``
    added to every query-passage attention logit; the logit is the cosine of the two
    segments' token means (all their tokens, as the embedder pools) over ``temperature``.

    From a trained embedder with a negative bias, the untrained model therefore ranks
    almost as that embedder does, and training teaches the top layers what attention across
    the pair adds. Because the lower layers see one segment only, their output for a text
    is the same in every pair: :class:`SplitStates` caches it to train the top layers."""
    query, passage, positions, input_ids = split_pair(
        input_ids, attention_mask, sep_token_id=sep_token_id, cls_token_id=cls_token_id)
    hidden = encode_apart(encoder, input_ids, positions, passage.to(torch.int64),
                          attention_mask.bool(), separate_layers)
    return joint_logits(encoder.encoder.layer[separate_layers:], hidden, query, passage,
                        cross_attention_bias, temperature)


def encode_apart(encoder, input_ids, positions, segment, valid, separate_layers: int):
    """Embeddings (segment ids zero) and the first ``separate_layers`` layers, each token
    attending only within its ``segment``: the part of the split reranker below the split."""
    hidden = encoder.embeddings(input_ids=input_ids,
                                position_ids=positions + position_offset(encoder),
                                token_type_ids=torch.zeros_like(input_ids))
    return run_layers(encoder.encoder.layer[:separate_layers], hidden,
                      attention_bias(segment, valid, None, hidden.dtype))


def joint_logits(layers, hidden, query, passage, cross_attention_bias: float,
                 temperature: float) -> torch.Tensor:
    """The layers above the split over the two segments' states side by side, then the
    cosine of the segments' means over ``temperature``."""
    valid = query | passage
    hidden = run_layers(layers, hidden, attention_bias(passage.to(torch.int64), valid,
                                                       cross_attention_bias, hidden.dtype))
    return torch.nn.functional.cosine_similarity(
        masked_mean(hidden, query), masked_mean(hidden, passage), dim=-1) / temperature


class SplitStates:
    """The split-attention reranker's lower-layer output per text, computed once.

    Below ``separate_layers`` a text never sees the other side of the pair, and the
    trainer keeps those layers frozen (LoRA only above them), so one text's states serve
    every pair it appears in and every step: a training step runs only the top layers.
    Texts are encoded alone, as the embedder encodes them (prefix, ``<s> … </s>``, truncated
    to their own length), which is what a pair's segment is in :func:`late_segment_logits`.
    The states stay on the model's device, about 200 KB per 128-token text at 384 dimensions
    in float32, for every text the stage trains or mines on.
    """

    def __init__(self, model: CrossEncoder, tokenizer, batch_size: int = 32):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.states: dict[tuple[str, int], torch.Tensor] = {}
        # A pair template without a separator opening the passage (BERT's [CLS] q [SEP]
        # p [SEP]) gives the passage no leading special token: drop the one a text alone gets.
        pair = tokenizer("a", "b")["input_ids"]
        sep = model.settings.sep_token_id
        first = pair.index(sep) if sep in pair else len(pair) - 1
        self.passage_lead = first + 1 < len(pair) and pair[first + 1] == sep

    def _encoder(self):
        return encoder_of(self.model.model)

    def _fill(self, texts: list[str], max_length: int, *, passages: bool = False) -> None:
        missing = sorted({t for t in texts if (t, max_length) not in self.states}, key=len)
        if not missing:
            return
        encoder, settings = self._encoder(), self.model.settings
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(missing), self.batch_size):
                    chunk = missing[start:start + self.batch_size]
                    batch = self.tokenizer(chunk, max_length=max_length, truncation=True,
                                           padding=True, return_tensors="pt").to(device)
                    ids, mask = batch["input_ids"], batch["attention_mask"]
                    if passages and not self.passage_lead:
                        ids, mask = ids[:, 1:], mask[:, 1:]
                    positions = torch.arange(ids.shape[1], device=device).expand_as(ids)
                    hidden = encode_apart(encoder, ids, positions, torch.zeros_like(ids),
                                          mask.bool(), settings.separate_layers)
                    for row, text in enumerate(chunk):
                        length = int(mask[row].sum())
                        self.states[(text, max_length)] = hidden[row, :length].detach()
        finally:
            self.model.train(was_training)

    def logits(self, queries: list[str], passages: list[str], *, query_length: int,
               passage_length: int) -> torch.Tensor:
        """One logit per ``(queries[i], passages[i])`` (prefixes applied here), with
        gradients through the layers above the split."""
        settings = self.model.settings
        queries = [settings.query_prefix + q for q in queries]
        passages = [settings.passage_prefix + p for p in passages]
        self._fill(queries, query_length)
        self._fill(passages, passage_length, passages=True)
        pairs = [(self.states[(q, query_length)], self.states[(p, passage_length)])
                 for q, p in zip(queries, passages)]
        width = max(len(q) + len(p) for q, p in pairs)
        first = pairs[0][0]
        hidden = first.new_zeros((len(pairs), width, first.shape[-1]))
        query = torch.zeros((len(pairs), width), dtype=torch.bool, device=first.device)
        passage = torch.zeros_like(query)
        for row, (q, p) in enumerate(pairs):
            hidden[row, :len(q)] = q
            hidden[row, len(q):len(q) + len(p)] = p
            query[row, :len(q)] = True
            passage[row, len(q):len(q) + len(p)] = True
        layers = self._encoder().encoder.layer[settings.separate_layers:]
        return joint_logits(layers, hidden, query, passage, settings.cross_attention_bias,
                            settings.head_temperature).float()


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
