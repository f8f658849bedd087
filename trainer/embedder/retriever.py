"""Exact dense retrieval with an embedder stage, in torch: the ``dense-model`` method behind
``lexedge eval --method dense --model STAGE_DIR``, and the rankings a stage mines its
negatives from (an embedder's own, or a reranker's stage-2 candidates: 2602.00805 trains
both components through the same stages). Both share the corpus encoding
(:mod:`lexedge.trainer.embedder.encodings`).
"""

from __future__ import annotations

import time
from pathlib import Path

from lexedge.runtime.evaluation import Retriever
from lexedge.trainer.backbone import resolve_device
from lexedge.trainer.data import Example, TrainingData
from lexedge.trainer.embedder.encodings import cached_encoding, corpus_embeddings, encoding_key
from lexedge.trainer.embedder.model import encode, load_stage_embedder
from lexedge.trainer.mining import rankings_from_top_k, streaming_top_k
from lexedge.trainer.training import across_ranks


def dense_model_retriever(config, dataset):
    """``lexedge.runtime.evaluation`` factory: ``Retriever`` over a stage folder.

    ``config.extra`` may set ``device``, ``batch_size``, ``max_query_length``,
    ``max_passage_length`` and ``progress``.
    """
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

    def compute():  # under several training processes, each encodes its share
        texts = [settings.passage_prefix + doc.indexed_text for doc in documents]
        return across_ranks(len(texts), lambda rows: encode(
            embedder, tokenizer, [texts[i] for i in rows], max_length=passage_length,
            batch_size=batch_size, progress=progress,
            description=f"encoding corpus ({chain[0].name})"))

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


def embedder_rankings(data: TrainingData, runtime, embedder, tokenizer,
                      examples: list[Example], *, depth: int, query_length: int,
                      passage_length: int, model_key: Path | None):
    """Exact dense top-``depth`` (plus room for judged articles) of every example's query
    with ``embedder`` (an :class:`~lexedge.trainer.embedder.model.Embedder`), in bounded memory,
    and the score of each example's positive under the same model. ``model_key`` names the
    saved stage ``embedder`` is, so its corpus encoding is shared with evaluation (None for a
    model mid-training).
    """
    settings = embedder.settings
    corpus = corpus_embeddings(embedder, tokenizer, settings, data, model_key=model_key,
                               max_length=passage_length, batch_size=runtime.encode_batch_size,
                               progress=runtime.progress)
    unique = unique_queries(examples)
    vectors = encode(embedder, tokenizer, [settings.query_prefix + q for q in unique],
                     max_length=query_length, batch_size=runtime.encode_batch_size)
    return ranked(data, examples, unique, vectors, corpus, depth)


def unique_queries(examples: list[Example]) -> list[str]:
    """Each example's query once, in first-seen order: what a miner encodes."""
    return list(dict.fromkeys(e.query for e in examples))


def ranked(data: TrainingData, examples: list[Example], unique: list[str], vectors, corpus,
           depth: int):
    """``(rankings, positive_scores)`` of every example: the exact top ``depth`` (plus room
    for judged articles) of its query's vector (row of ``vectors``, in ``unique``'s order)
    over ``corpus`` (rows in ``data.doc_ids``' order), and its positive's score."""
    extra = max(len(e.judged) for e in examples)
    scores, indices = streaming_top_k(vectors, corpus, depth + extra)
    row = {q: i for i, q in enumerate(unique)}
    position = {doc_id: i for i, doc_id in enumerate(data.documents)}
    doc_ids = data.doc_ids
    rankings, positive_scores = [], []
    for example in examples:
        r = row[example.query]
        rankings.append([(doc_ids[int(i)], float(s)) for s, i in zip(scores[r], indices[r])])
        positive_scores.append(float(vectors[r] @ corpus[position[example.positive]]))
    return rankings, positive_scores


def bundle_rankings(data: TrainingData, bundle: str | Path, examples: list[Example], *,
                    depth: int, progress: bool = False):
    """What :func:`embedder_rankings` returns, mined with an exported bundle's embedder
    (``lexedge.runtime``'s onnxruntime path, the prefixes its manifest records) instead of a
    torch model: ``bundle`` is a folder or ``builtin``. Positive scores are the bundle's, so
    ``false_negative_margin`` compares the bundle's scores with each other."""
    from lexedge.runtime.builtin import bundle_location
    from lexedge.runtime.bundle import Bundle

    embedder = Bundle.load(bundle_location(bundle)).embedder()
    corpus = embedder.encode([data.passage(d) for d in data.doc_ids], kind="passage",
                             progress=progress)
    unique = unique_queries(examples)
    return ranked(data, examples, unique, embedder.encode(unique, kind="query"), corpus,
                  depth)
