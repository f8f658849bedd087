"""Corpus encodings shared by evaluation and mining: a stage's dev evaluation encodes the corpus
with exactly the model the next stage mines with, so the encoding is kept for it (memoised per
model folder, corpus hash and settings, the last two in this process).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from lexedge.runtime.provenance import file_sha256
from lexedge.trainer.embedder.model import encode
from lexedge.trainer.training import across_ranks

_ENCODINGS: OrderedDict = OrderedDict()
_MAX_ENCODINGS = 2


def cached_encoding(key: tuple, compute):
    """Corpus embeddings memoised per (model folder, corpus hash, settings) in this process."""
    if key in _ENCODINGS:
        _ENCODINGS.move_to_end(key)
        return _ENCODINGS[key]
    value = compute()
    _ENCODINGS[key] = value
    while len(_ENCODINGS) > _MAX_ENCODINGS:
        _ENCODINGS.popitem(last=False)
    return value


def encoding_key(model_dir, corpus_path, max_length: int, prefix: str) -> tuple:
    return (str(Path(model_dir).resolve()), file_sha256(corpus_path), int(max_length), prefix)


def corpus_embeddings(embedder, tokenizer, settings, data, *, model_key, max_length: int,
                      batch_size: int, progress: bool) -> np.ndarray:
    """Corpus embeddings for mining; shared with evaluation when ``model_key`` names a saved
    stage folder, recomputed when it is None (a model mid-training)."""

    def compute():  # every rank encodes its share (training.across_ranks)
        texts = [settings.passage_prefix + data.passage(doc_id) for doc_id in data.documents]
        return across_ranks(len(texts), lambda rows: encode(
            embedder, tokenizer, [texts[i] for i in rows], max_length=max_length,
            batch_size=batch_size, progress=progress, description="encoding corpus for mining"))

    if model_key is None:
        return compute()
    return cached_encoding(encoding_key(model_key, data.dataset.corpus_path, max_length,
                                        settings.passage_prefix), compute)
