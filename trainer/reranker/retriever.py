"""Reranking with a reranker stage, in torch: the ``rerank-model`` method behind ``lexedge eval
--method rerank --model STAGE_DIR`` (the reranker's dev metrics during training come from
it), over the candidates of a first stage (BM25, or an embedder stage through
:func:`lexedge.trainer.embedder.retriever.dense_model_retriever`).
"""

from __future__ import annotations

import dataclasses
import time

from lexedge.runtime.builtin import names_bundle
from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.evaluation import METHODS, Retriever
from lexedge.trainer.backbone import load_tokenizer, resolve_device
from lexedge.trainer.embedder.retriever import dense_model_retriever
from lexedge.trainer.lora import load_stage_backbone
from lexedge.trainer.reranker.model import CrossEncoder, load_cross_encoder, score_pairs
from lexedge.trainer.stage import EncoderSettings


def rerank_model_retriever(config, dataset):
    """``lexedge eval --method rerank --model STAGE_DIR``: the first stage's top
    ``config.rerank`` re-ordered by a reranker stage in torch, the rest of the first stage's
    ranking kept below them.

    ``config.extra`` may set ``first_stage`` (``bm25``, the default, an embedder stage
    folder, or an exported bundle: a folder or ``builtin``, its embedder served INT8), ``device``, ``batch_size``, ``max_query_length``, ``max_passage_length`` and
    ``progress``. The reranking time is reported per query.
    """
    extra = dict(config.extra or {})
    first = str(extra.get("first_stage") or "bm25")
    if first == "bm25":
        first_retriever = METHODS["bm25"](dataclasses.replace(config, method="bm25"), dataset)
    elif names_bundle(first):  # a bundle's embedder as lexedge search serves it (INT8, exact)
        first_retriever = METHODS["dense"](dataclasses.replace(
            config, method="dense", model=None, bundle=first, extra={}), dataset)
    else:  # the embedder at the lengths it was evaluated at, not the reranker's
        first_extra = {k: v for k, v in extra.items()
                       if k in ("device", "batch_size", "progress")}
        first_retriever = dense_model_retriever(
            dataclasses.replace(config, method="dense", model=first, extra=first_extra),
            dataset)
    device = resolve_device(extra.get("device", "auto"))
    model, chain = load_stage_backbone(config.model, device=device, loader=load_cross_encoder)
    reranker = CrossEncoder(model, EncoderSettings.read(chain)).eval()
    tokenizer = load_tokenizer(chain)
    query_length = int(extra.get("max_query_length", 64))
    passage_length = int(extra.get("max_passage_length", 128))
    batch_size = int(extra.get("batch_size", 32))
    depth = int(config.rerank)
    if depth < 1:
        raise LexedgeError("--method rerank needs --rerank N >= 1 candidates")
    texts = {doc.id: doc.indexed_text for doc in dataset.corpus()}
    timing = {"rerank_seconds_per_query": None, "rerank_pairs": 0}

    def search_many(queries, k):
        first_runs = first_retriever.search_many(queries, max(k, depth))
        runs, seconds = [], 0.0
        for query, ranking in zip(queries, first_runs):
            head, tail = ranking[:depth], ranking[depth:]
            started = time.perf_counter()
            scores = score_pairs(reranker, tokenizer, [(query, texts[d]) for d, _ in head],
                                 max_length=query_length + passage_length,
                                 batch_size=batch_size)
            seconds += time.perf_counter() - started
            timing["rerank_pairs"] += len(head)
            reranked = sorted(zip([d for d, _ in head], scores.tolist()), key=lambda x: -x[1])
            floor = min((s for _, s in reranked), default=0.0)
            runs.append(reranked + [(d, floor - 1.0 - i) for i, (d, _) in enumerate(tail)])
        timing["rerank_seconds_per_query"] = round(seconds / max(len(queries), 1), 4)
        return runs

    setup = {key: value for key, value in first_retriever.setup.items()
             if key in ("doc_ids", "corpus_size", "analyzer", "bundle")}
    setup.update({"model": str(chain[0]), "stack": [str(p) for p in chain],
                  "first_stage": first, "rerank": depth, "pair_max_length":
                  query_length + passage_length, "timing": timing})
    return Retriever(search_many, setup)
