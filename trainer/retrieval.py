"""Exact dense retrieval with a trainer stage, in torch: the ``dense-model`` method behind
``lexedge eval --method dense --model STAGE_DIR``, and the corpus encodings that mining
shares with evaluation (a stage's dev evaluation encodes the corpus with exactly the model
the next stage mines with, so the encoding is kept for it).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lexedge.trainer.mining import rankings_from_top_k, streaming_top_k

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
    from lexedge.trainer.provenance import file_hash

    return (str(Path(model_dir).resolve()), file_hash(corpus_path), int(max_length), prefix)


def stage_eval_lengths(chain: list[Path], settings) -> tuple[int, int]:
    """Query and passage lengths a stage was evaluated at during training (its
    ``train_config.json``), else the model's maximum."""
    for folder in chain:
        path = Path(folder) / "train_config.json"
        if path.is_file():
            evaluation = json.loads(path.read_text(encoding="utf-8")).get("evaluation", {})
            return (int(evaluation.get("max_query_length", 64)),
                    int(evaluation.get("max_passage_length", settings.max_length)))
    return min(settings.max_length, 512), min(settings.max_length, 512)


@dataclass
class StageEmbedder:
    """An embedder stage ready to encode: the model, its tokenizer and settings, and the
    lengths it was evaluated (and will be served) at."""

    embedder: object
    tokenizer: object
    settings: object
    chain: list
    query_length: int
    passage_length: int


def load_stage_embedder(folder, device) -> StageEmbedder:
    """A stage folder (its adapter stack merged) or a base model folder, in eval mode."""
    from lexedge.trainer.lora import load_stage_backbone
    from lexedge.trainer.modeling import Embedder, EncoderSettings, load_tokenizer

    backbone, chain = load_stage_backbone(folder, device=device)
    settings = EncoderSettings.read(chain)
    query_length, passage_length = stage_eval_lengths(chain, settings)
    return StageEmbedder(Embedder(backbone, settings).eval(), load_tokenizer(chain), settings,
                         chain, query_length, passage_length)


def dense_model_retriever(config, dataset):
    """``lexedge.runtime.evaluation`` factory: ``Retriever`` over a stage folder.

    ``config.extra`` may set ``device``, ``batch_size``, ``max_query_length``,
    ``max_passage_length`` and ``progress``.
    """
    from lexedge.runtime.evaluation import Retriever
    from lexedge.trainer.modeling import encode, resolve_device

    extra = config.extra or {}
    started = time.perf_counter()
    stage = load_stage_embedder(config.model, resolve_device(extra.get("device", "auto")))
    embedder, tokenizer, settings, chain = (stage.embedder, stage.tokenizer, stage.settings,
                                            stage.chain)
    query_length = int(extra.get("max_query_length", stage.query_length))
    passage_length = int(extra.get("max_passage_length", stage.passage_length))
    batch_size = int(extra.get("batch_size", 32))
    progress = bool(extra.get("progress", True))
    documents = list(dataset.corpus())
    doc_ids = [doc.id for doc in documents]

    def compute():
        return encode(embedder, tokenizer,
                      [settings.passage_prefix + doc.indexed_text for doc in documents],
                      max_length=passage_length, batch_size=batch_size, progress=progress,
                      description=f"encoding corpus ({chain[0].name})")

    corpus = cached_encoding(encoding_key(chain[0], dataset.corpus_path, passage_length,
                                          settings.passage_prefix), compute)
    del documents

    def search_many(queries, k):
        vectors = encode(embedder, tokenizer, [settings.query_prefix + q for q in queries],
                         max_length=query_length, batch_size=batch_size)
        scores, indices = streaming_top_k(vectors, corpus, k)
        return rankings_from_top_k(scores, indices, doc_ids)

    return Retriever(search_many, {
        "model": str(chain[0]), "stack": [str(p) for p in chain],
        "pooling": settings.pooling, "max_query_length": query_length,
        "max_passage_length": passage_length, "corpus_size": len(doc_ids),
        "doc_ids": doc_ids, "index_seconds": round(time.perf_counter() - started, 3)})


def register() -> None:
    """Make ``dense --model DIR`` and ``rerank --model DIR`` available to ``lexedge eval``
    and ``run_evaluation``."""
    from lexedge.runtime.evaluation import register_method
    from lexedge.trainer.reranker import rerank_model_retriever

    register_method("dense-model", dense_model_retriever)
    register_method("rerank-model", rerank_model_retriever)


def corpus_embeddings(embedder, tokenizer, settings, data, *, model_key, max_length: int,
                      batch_size: int, progress: bool) -> np.ndarray:
    """Corpus embeddings for mining; shared with evaluation when ``model_key`` names a saved
    stage folder, recomputed when it is None (a model mid-training)."""
    from lexedge.trainer.modeling import encode

    def compute():
        texts = [settings.passage_prefix + data.passage(doc_id) for doc_id in data.documents]
        return encode(embedder, tokenizer, texts, max_length=max_length, batch_size=batch_size,
                      progress=progress, description="encoding corpus for mining")

    if model_key is None:
        return compute()
    return cached_encoding(encoding_key(model_key, data.dataset.corpus_path, max_length,
                                        settings.passage_prefix), compute)
