"""Evaluate a retrieval method on a BEIR dataset split: the engine behind ``lexedge eval``.

Methods: ``bm25``; ``dense``, ``hybrid`` and ``pipeline`` over the served path (a bundle's INT8
models through :class:`~lexedge.runtime.searcher.Searcher`, on ``--index`` or on an index built
from the corpus); ``dense --model DIR`` evaluates a trainer checkpoint with torch, through the
``dense-model`` method that ``lexedge.trainer`` registers (the runtime never imports it), and
``rerank --model DIR`` a trainer reranker stage over a first stage's candidates
(``rerank-model``, registered the same way).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .datasets import BeirDataset
from .errors import LexedgeError
from .metrics import RECALL_CUTOFFS, evaluate
from .settings import SearchSettings

RUN_DEPTH = max(RECALL_CUTOFFS)


@dataclass
class EvalConfig:
    """What ``lexedge eval`` was asked to do (saved beside the metrics).

    ``budget``, ``rerank``, ``alpha``, ``fusion``, ``rerank_weight`` and ``rerank_tokens``
    are the served methods' :class:`~lexedge.runtime.settings.SearchSettings`, with its
    defaults and checks (:meth:`search_settings`); ``depth`` replaces its ``top``.
    """

    data_dir: str
    split: str = "dev"
    method: str = "bm25"
    analyzer: str = "auto"
    k1: float = 1.2
    b: float = 0.75
    index: str | None = None
    bundle: str | None = None
    model: str | None = None  # a trainer model / stage folder (needs lexedge[train])
    budget: int = SearchSettings.budget
    pool: int = SearchSettings.pool
    rerank: int = SearchSettings.rerank
    alpha: float | None = SearchSettings.alpha  # None: the bundle's
    fusion: str = SearchSettings.fusion
    rerank_weight: float | None = SearchSettings.rerank_weight  # None: the bundle's
    rerank_tokens: int | None = SearchSettings.rerank_tokens  # None: the bundle's
    depth: int = RUN_DEPTH
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.search_settings()  # an out-of-range setting is refused before any work

    def search_settings(self, **changes) -> SearchSettings:
        """These search settings as :class:`SearchSettings`, with ``changes``."""
        return SearchSettings(budget=self.budget, pool=self.pool, rerank=self.rerank,
                              alpha=self.alpha, fusion=self.fusion,
                              rerank_weight=self.rerank_weight,
                              rerank_tokens=self.rerank_tokens).replace(**changes)


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


def _served_index(config: EvalConfig, dataset: BeirDataset):
    """The index users run: the one given, or one built from the corpus with the bundle into
    a temporary folder."""
    import tempfile

    from .bundle import Bundle
    from .index import Index

    if config.index:
        return Index.load(config.index, bundle=config.bundle), None
    if not config.bundle:
        raise LexedgeError(f"--method {config.method} needs --index IDX or --bundle BUNDLE")
    workdir = tempfile.TemporaryDirectory(prefix="lexedge-eval-")
    index = Index.build(dataset.corpus_path, Path(workdir.name) / "index",
                        analyzer=config.analyzer, k1=config.k1, b=config.b,
                        bundle=Bundle.load(config.bundle), progress=True)
    return index, workdir


def _searcher_retriever(config: EvalConfig, dataset: BeirDataset) -> Retriever:
    """dense, hybrid and pipeline all run :class:`Searcher`, exactly as ``lexedge search``."""
    from .searcher import Searcher

    started = time.perf_counter()
    index, workdir = _served_index(config, dataset)
    searcher = Searcher(index)
    if not searcher.has_dense:
        raise LexedgeError(f"{index.path}: has no dense vectors; build it with --bundle")
    # pipeline is what lexedge search serves: a bundle without a reranker serves the fused
    # first stage at the budget (SearchSettings.rerank is ignored there), and is scored so.
    reranks = config.method == "pipeline" and searcher.has_reranker
    # The run is as deep as the budget for dense/hybrid (Recall@K up to K), and every
    # metric cutoff is reported; deeper cutoffs than the budget simply stop growing.
    settings = config.search_settings(
        alpha=1.0 if config.method == "dense" else config.alpha,
        rerank=config.rerank if reranks else 0,
        budget=config.budget if config.method == "pipeline"
        else max(config.budget, config.depth))
    budget, rerank, alpha = settings.budget, settings.rerank, searcher.alpha_for(settings)

    def search_many(queries, k):
        at_depth = settings.replace(top=min(k, budget))
        return [served_order(searcher.search(query, at_depth).hits) for query in queries]

    live_ids = [index.docs.id_of(r) for r in range(len(index.docs)) if r not in index.deleted]
    setup = {"analyzer": index.analyzer.to_manifest(), "bundle": index.manifest["bundle"],
             "budget": budget, "pool": settings.pool, "rerank": rerank, "alpha": alpha,
             "fusion": config.fusion,
             "rerank_weight": (searcher.rerank_weight if config.rerank_weight is None
                               else config.rerank_weight) if rerank else None,
             "rerank_tokens": searcher.rerank_tokens_for(settings) if rerank else None,
             "corpus_size": len(live_ids), "doc_ids": live_ids,
             "index_seconds": round(time.perf_counter() - started, 3),
             "_keep_alive": workdir}
    return Retriever(search_many, setup)


def _model_retriever(config: EvalConfig, dataset: BeirDataset) -> Retriever:
    if "dense-model" not in METHODS:
        raise LexedgeError("--model needs the trainer: pip install 'lexedge[train]'")
    return METHODS["dense-model"](config, dataset)


def served_order(hits) -> list[tuple[str, float]]:
    """Hits as a run whose scores fall with the served rank. The metrics (pytrec_eval) rank
    a run by score, but after re-ranking the re-scored head (reranker scale) and the
    first-stage tail (fusion scale) are not comparable: scored as served, tail documents
    would climb over the head, and the measured order would not be the one users see."""
    return [(hit.id, float(len(hits) - rank)) for rank, hit in enumerate(hits)]


def _rerank_model_retriever(config: EvalConfig, dataset: BeirDataset) -> Retriever:
    if "rerank-model" not in METHODS:
        raise LexedgeError("--method rerank needs the trainer: pip install 'lexedge[train]'")
    if not config.model:
        raise LexedgeError("--method rerank needs --model RERANKER_STAGE_DIR")
    return METHODS["rerank-model"](config, dataset)


def _dense_retriever(config: EvalConfig, dataset: BeirDataset) -> Retriever:
    return _model_retriever(config, dataset) if config.model \
        else _searcher_retriever(config, dataset)


METHODS: dict[str, Callable[[EvalConfig, BeirDataset], Retriever]] = {
    "bm25": _bm25_retriever, "dense": _dense_retriever, "hybrid": _searcher_retriever,
    "pipeline": _searcher_retriever, "rerank": _rerank_model_retriever}


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
    setup.pop("_keep_alive", None)
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
