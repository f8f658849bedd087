"""Hybrid search with an adjustable retrieval budget: the path every user query takes.

First stage: the dense index (HNSW, search breadth tied to the budget K) and BM25, each asked
for K candidates and fused (normalised weighted scores or RRF). Second stage: the bundle's
cross-encoder re-scores the top N of the fused list. K is the user's quality/latency knob:
recall grows with K, and so does the work (see ``bench/``).

Example::

    searcher = Searcher("idx")
    result = searcher.search("解雇の予告", budget=100, rerank=20)
    for hit in result.hits:
        print(hit.rank, hit.title, hit.scores)
"""

from __future__ import annotations

import numbers
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .datasets import Document
from .errors import LexedgeError
from .fusion import fuse, interpolate
from .index import Index
from .snippets import matched_terms, snippet

#: The longest query accepted, in characters. A legal question is at most a paragraph: the
#: longest in ../shared/data is 385 characters (ja_appi; STARD's is 154). Every stage's work
#: grows with the query (a 100,000-character one took 52-95 s with re-ranking: issue 20,
#: finding 8), and a longer text is a document to index, not a query.
MAX_QUERY_CHARS = 2_000


@dataclass
class Hit:
    rank: int
    id: str
    title: str
    text: str
    snippet: str
    score: float
    scores: dict  # per stage: bm25, dense, fused, rerank (those that ran)
    matched_terms: list[str]
    metadata: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SearchResult:
    query: str
    hits: list[Hit]
    timings_ms: dict  # per stage and "total"
    settings: dict


class Searcher:
    """Search an :class:`~lexedge.runtime.index.Index` (a path or an open index).

    A searcher that lives long (the TUI, a service) follows its index: when ``lexedge index
    update`` or a rebuild replaces the folder, the next search reloads it (issue 20). Until
    then it keeps serving the version it opened, whose files stay readable.

    Args:
        index: the index folder or an open ``Index``.
        bundle: a bundle folder overriding the one recorded in the index (it must be the same
            bundle: its hash is checked).
    """

    def __init__(self, index: Index | str | Path, bundle=None):
        self._bundle_override = bundle
        self._open(index if isinstance(index, Index) else Index.load(index, bundle=bundle))

    def refresh(self) -> bool:
        """Reload the index if it was replaced on disk since it was opened; whether it was."""
        try:
            current = self.index.current()
        except LexedgeError:
            # rebuilt with another bundle: take the recorded (or given) one
            current = Index.load(self.index.path, bundle=self._bundle_override)
        if current is self.index:
            return False
        self._open(current)
        return True

    def _open(self, index: Index) -> None:
        self.index = index
        bundle = self.index.bundle
        self.embedder = bundle.embedder() if bundle is not None else None
        self.reranker = bundle.reranker() if bundle is not None and bundle.has_reranker \
            else None
        # The mix of reranker and first-stage scores the bundle's selection chose (lexedge
        # select); 1.0, pure re-ranking, when it records none.
        self.rerank_weight = float(bundle.manifest["reranker"].get("rerank_weight", 1.0)) \
            if self.reranker is not None else 1.0

    @property
    def has_dense(self) -> bool:
        return self.index.dense is not None

    @property
    def has_reranker(self) -> bool:
        return self.reranker is not None

    def first_stage(self, query: str, budget: int, alpha: float = 0.5,
                    fusion: str = "weighted", timings: dict | None = None,
                    ) -> list[tuple[str, float, dict]]:
        """Up to ``budget`` fused candidates ``(doc_id, fused_score, per_stage_scores)``."""
        timings = {} if timings is None else timings
        started = time.perf_counter()
        lexical = self.index.bm25.search(query, budget) if alpha < 1.0 or not self.has_dense \
            else []
        timings["bm25"] = _ms(started)
        if not self.has_dense or alpha <= 0.0:
            return [(doc, score, {"bm25": score}) for doc, score in lexical]
        started = time.perf_counter()
        vector = self.embedder.encode([query], kind="query")
        rows, scores = self.index.dense.search(vector, budget)
        dense = [(self.index.docs.id_of(int(r)), float(s)) for r, s in zip(rows[0], scores[0])]
        timings["dense"] = _ms(started)
        fused = fuse(dense, lexical, budget, method=fusion, alpha=alpha)
        per_doc_dense, per_doc_bm25 = dict(dense), dict(lexical)
        return [(doc, score, {"dense": per_doc_dense.get(doc), "bm25": per_doc_bm25.get(doc),
                              "fused": score}) for doc, score in fused]

    def search(self, query: str, budget: int = 100, rerank: int = 20, alpha: float = 0.5,
               fusion: str = "weighted", top: int = 10, filters: dict | None = None,
               rerank_weight: float | None = None) -> SearchResult:
        """Answer ``query``.

        Args:
            budget: K, candidates taken from each first-stage retriever.
            rerank: N, how many fused candidates the cross-encoder re-scores (0: none; ignored
                when the bundle has no reranker).
            alpha: dense weight in the weighted fusion (0 = BM25 only, 1 = dense only).
            fusion: ``weighted`` or ``rrf``.
            top: hits returned.
            filters: metadata equality filters, e.g. ``{"law": "民法"}``; a value may also be
                a prefix ending in ``*`` (``{"source": "contracts/*"}``).
            rerank_weight: the re-ranked head is ordered by ``w * reranker + (1 - w) * first
                stage`` (both min-max normalised over the head); 1 is pure re-ranking.
                Default: the bundle's (chosen by ``lexedge select``), else 1.

        Raises:
            LexedgeError: one line naming the argument that is out of range, or a query that
                is not valid text or longer than :data:`MAX_QUERY_CHARS`.
        """
        check_search_arguments(query, budget=budget, rerank=rerank, alpha=alpha, top=top,
                               rerank_weight=rerank_weight)
        self.refresh()
        timings: dict[str, float] = {}
        started = time.perf_counter()
        candidates = self.first_stage(query, budget, alpha, fusion, timings) \
            if query.strip() else []
        documents = {doc: self.index.document(doc) for doc, _, _ in candidates}
        if filters:
            candidates = [c for c in candidates if _matches(documents[c[0]], filters)]
        reranked = 0
        weight = self.rerank_weight if rerank_weight is None else float(rerank_weight)
        if not 0.0 <= weight <= 1.0:
            raise LexedgeError(f"rerank weight {weight:g}: must be within [0, 1]")
        if self.reranker is not None and rerank > 0 and candidates:
            stage = time.perf_counter()
            head = candidates[:rerank]
            scores = self.reranker.score(query, [documents[d].indexed_text for d, _, _ in head])
            per_stage = {doc: per for doc, _, per in head}
            candidates = [(doc, final, dict(per_stage[doc], rerank=raw)) for doc, final, raw
                          in interpolate([(d, s) for d, s, _ in head], scores, weight)] \
                + candidates[rerank:]
            reranked = len(head)
            timings["rerank"] = _ms(stage)
        hits = []
        for rank, (doc, score, per_stage) in enumerate(candidates[:top], start=1):
            document = documents[doc]
            terms = matched_terms(self.index.analyzer, query, document.indexed_text)
            hits.append(Hit(rank, doc, document.title, document.text,
                            snippet(document.text, terms), score,
                            {k: v for k, v in per_stage.items() if v is not None}, terms,
                            document.metadata))
        timings["total"] = _ms(started)
        settings = {"budget": budget, "rerank": reranked, "alpha": alpha if self.has_dense
                    else 0.0, "fusion": fusion, "filters": filters or {},
                    "rerank_weight": weight if reranked else None}
        return SearchResult(query, hits, timings, settings)


def check_query(query) -> None:
    """Refuse, with one line, a query that is not text, holds an undecodable byte (a lone
    surrogate: ``'\\udcff'`` is how Python keeps the byte 0xff of a command-line argument that
    is not UTF-8) or is longer than :data:`MAX_QUERY_CHARS` (issue 20, finding 8)."""
    if not isinstance(query, str):
        raise LexedgeError(f"query: must be text, got {type(query).__name__}")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(query[exc.start])
        what = f"undecodable byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF \
            else f"lone surrogate U+{code:04X}"
        raise LexedgeError(f"query: not valid text ({what} at character {exc.start + 1}); "
                           "give it as UTF-8") from None
    if len(query) > MAX_QUERY_CHARS:
        raise LexedgeError(f"query: {len(query):,} characters, over the limit of "
                           f"{MAX_QUERY_CHARS:,} (MAX_QUERY_CHARS); shorten it")


def check_search_arguments(query, budget=100, rerank=20, alpha=0.5, top=10,
                           rerank_weight=None) -> None:
    """Refuse out-of-range :meth:`Searcher.search` arguments with one line naming the argument
    (``budget -5: must be a positive integer``), before any work is done."""
    check_query(query)
    _check_count("budget", budget, minimum=1)
    _check_count("rerank", rerank, minimum=0)
    _check_count("top", top, minimum=1)
    _check_fraction("alpha", alpha)
    if rerank_weight is not None:
        _check_fraction("rerank weight", rerank_weight)


def _check_count(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        kind = "a positive" if minimum == 1 else "a non-negative"
        raise LexedgeError(f"{name} {_shown(value)}: must be {kind} integer")


def _check_fraction(name: str, value) -> None:
    # ``not 0 <= value <= 1`` also refuses NaN
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not 0.0 <= value <= 1.0:
        raise LexedgeError(f"{name} {_shown(value)}: must be within [0, 1]")


def _shown(value) -> str:
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return f"{value:g}"
    return str(value) if isinstance(value, numbers.Number) else repr(value)


def _matches(document: Document, filters: dict) -> bool:
    for key, wanted in filters.items():
        value = str(document.metadata.get(key, document.title if key == "title" else ""))
        if wanted.endswith("*") and value.startswith(wanted[:-1]):
            continue
        if value != wanted:
            return False
    return True


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
