"""Evaluate a retrieval method on a BEIR dataset split: the engine behind ``lexedge eval``.

Methods are looked up by name so the trainer and the runtime can add ``dense``, ``hybrid`` and
``pipeline`` next to ``bm25`` without changing the command.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .datasets import BeirDataset
from .errors import LexedgeError
from .metrics import RECALL_CUTOFFS, evaluate

RUN_DEPTH = max(RECALL_CUTOFFS)


@dataclass
class EvalConfig:
    """What ``lexedge eval`` was asked to do (saved beside the metrics)."""

    data_dir: str
    split: str = "dev"
    method: str = "bm25"
    analyzer: str = "auto"
    k1: float = 1.2
    b: float = 0.75
    index: str | None = None
    depth: int = RUN_DEPTH
    extra: dict = field(default_factory=dict)


@dataclass
class Retriever:
    """A fitted retriever: ``search_many(queries, k)`` plus facts worth reporting."""

    search_many: Callable
    setup: dict


def _bm25_retriever(config: EvalConfig, dataset: BeirDataset) -> Retriever:
    from .bm25 import BM25Index
    from .index import Index, choose_analyzer

    started = time.perf_counter()
    if config.index:
        bm25 = Index.load(config.index).bm25
    else:
        analyzer = choose_analyzer(dataset.corpus_path, config.analyzer)
        bm25 = BM25Index.build(dataset.corpus(), analyzer, k1=config.k1, b=config.b,
                               progress=True)
    return Retriever(bm25.search_many, {
        "analyzer": bm25.analyzer.to_manifest(), "k1": bm25.k1, "b": bm25.b,
        "corpus_size": len(bm25), "doc_ids": bm25.doc_ids,
        "index_seconds": round(time.perf_counter() - started, 3)})


METHODS: dict[str, Callable[[EvalConfig, BeirDataset], Retriever]] = {"bm25": _bm25_retriever}


def register_method(name: str, factory: Callable[[EvalConfig, BeirDataset], Retriever]) -> None:
    METHODS[name] = factory


def run_evaluation(config: EvalConfig) -> tuple[dict, dict]:
    """Return ``(metrics, run)``; ``metrics`` holds every key of the metrics JSON."""
    if config.method not in METHODS:
        raise LexedgeError(f"unknown method {config.method!r} "
                           f"(available: {', '.join(sorted(METHODS))})")
    dataset = BeirDataset(Path(config.data_dir))
    queries = dataset.queries()
    qrels_path = dataset.qrels_path(config.split)  # fail on a bad split before indexing
    retriever = METHODS[config.method](config, dataset)
    setup = dict(retriever.setup)
    doc_ids = set(setup.pop("doc_ids"))
    qrels = dataset.qrels(config.split, query_ids=queries, doc_ids=doc_ids)
    query_ids = list(qrels)
    started = time.perf_counter()
    rankings = retriever.search_many([queries[q] for q in query_ids], config.depth)
    elapsed = time.perf_counter() - started
    run = dict(zip(query_ids, rankings))
    metrics = evaluate(run, qrels)
    metrics["queries_per_second"] = round(len(query_ids) / elapsed, 2) if elapsed > 0 else None
    metrics.update({"method": config.method, "split": config.split,
                    "dataset": str(dataset.root), "qrels": str(qrels_path), **setup})
    return metrics, run
