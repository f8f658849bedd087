"""Hybrid search with an adjustable retrieval budget: the path every user query takes.

First stage: the dense index (exact, or an HNSW graph whose search breadth is tied to the
budget K) and BM25, each asked for K candidates and fused (normalised weighted scores or
RRF). Second stage: the bundle's cross-encoder re-scores the top N of the fused list. K is the user's quality/latency knob:
recall grows with K, and so does the work (see ``bench/``).

Example::

    searcher = Searcher("idx")
    result = searcher.search("解雇の予告", budget=200, rerank=0)  # or a SearchSettings
    for hit in result.hits:
        print(hit.rank, hit.title, hit.scores)
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .datasets import Document
from .errors import LexedgeError
from .filters import FilterCache, matches
from .fusion import fuse, interpolate
from .index import Index
from .onnx_models import OnnxLateInteraction
from .settings import DEFAULT_ALPHA, SearchSettings
from .snippets import longest_first, snippet

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
        follow: reload the index before a search when it was replaced on disk. A service
            that shares one searcher between threads swaps whole searchers instead
            (``lexedge.runtime.serve``), so that no search sees a half-reloaded one.
    """

    def __init__(self, index: Index | str | Path, bundle=None, follow: bool = True):
        self._bundle_override = bundle
        self.follow = follow
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
        self.filters = FilterCache(index)
        bundle = self.index.bundle
        self.embedder = bundle.embedder() if bundle is not None else None
        self.reranker = bundle.reranker() if bundle is not None and bundle.has_reranker \
            else None
        analyzer = (index.manifest.get("analyzer") or {}).get("name")
        # The mix of reranker and first-stage scores chosen on dev (lexedge select, lexedge
        # late-interaction), for this index's language when the bundle has one for it; 1.0,
        # pure re-ranking, when it records none.
        rerank = bundle.manifest["reranker"] if self.reranker is not None else {}
        self.rerank_weight = float((rerank.get("rerank_weight_by_analyzer") or {}).get(
            analyzer, rerank.get("rerank_weight", 1.0)))
        # A late-interaction reranker reads as many tokens of each passage as was chosen on
        # dev for this language (lexedge late-interaction); the manifest's default otherwise.
        self.passage_tokens = bundle.passage_tokens(analyzer) if self.reranker is not None \
            else None  # None: a cross-encoder, or no reranker
        # Passage states stored at index time serve re-ranking when this reranker made them
        # (a bundle overriding the recorded one may hold another).
        states = index.states
        self.stored_states = states if states is not None and self.reranker is not None \
            and states.reranker == bundle.reranker_id else None
        # The fusion weight chosen for the bundle's embedder on dev (lexedge export --alpha),
        # for this index's language when the bundle has one for it (--alpha-for ja=A);
        # DEFAULT_ALPHA when it records none.
        search = (bundle.manifest.get("search") or {}) if bundle is not None else {}
        self.alpha = float((search.get("alpha_by_analyzer") or {}).get(
            analyzer, search.get("alpha", DEFAULT_ALPHA)))

    def alpha_for(self, settings: SearchSettings) -> float:
        """The fusion weight a search uses: its own, else the bundle's."""
        return self.alpha if settings.alpha is None else float(settings.alpha)

    @property
    def has_dense(self) -> bool:
        return self.index.dense is not None

    @property
    def has_reranker(self) -> bool:
        return self.reranker is not None

    def first_stage(self, query: str, settings: SearchSettings, timings: dict | None = None,
                    query_terms: list[str] | None = None) -> list[tuple[str, float, dict]]:
        """Up to ``settings.budget`` fused candidates ``(doc_id, fused_score,
        per_stage_scores)``. ``query_terms``: the query as the index's analyzer gives it,
        when the caller has it already."""
        timings = {} if timings is None else timings
        budget, alpha = settings.budget, self.alpha_for(settings)
        # each list this deep when two are fused; the fusion keeps ``budget``
        fuses = self.has_dense and 0.0 < alpha < 1.0
        fetched = budget * settings.pool if fuses else budget
        # filters choose the documents first, then each retriever ranks only those (issue 23)
        allowed = self.filters.allowed(settings.filters) if settings.filters else None
        if allowed is not None and not allowed.rows:
            return []
        started = time.perf_counter()
        lexical = self.index.bm25.search(
            query, fetched, None if allowed is None else allowed.bm25_mask(
                self.index.bm25.doc_ids), query_terms) \
            if alpha < 1.0 or not self.has_dense else []
        timings["bm25"] = _ms(started)
        if not self.has_dense or alpha <= 0.0:
            return [(doc, score, {"bm25": score}) for doc, score in lexical]
        started = time.perf_counter()
        vector = self.embedder.encode([query], kind="query")
        rows, scores = self.index.dense.search(
            vector, fetched, allowed=None if allowed is None else allowed.rows)
        dense = [(self.index.docs.id_of(int(r)), float(s)) for r, s in zip(rows[0], scores[0])]
        timings["dense"] = _ms(started)
        fused = fuse(dense, lexical, budget, method=settings.fusion, alpha=alpha)
        per_doc_dense, per_doc_bm25 = dict(dense), dict(lexical)
        return [(doc, score, {"dense": per_doc_dense.get(doc), "bm25": per_doc_bm25.get(doc),
                              "fused": score}) for doc, score in fused]

    def search(self, query: str, settings: SearchSettings | None = None,
               **overrides) -> SearchResult:
        """Answer ``query``.

        Args:
            settings: what to search with; default ``SearchSettings()``, whose fields say what
                each setting means (:class:`~lexedge.runtime.settings.SearchSettings`).
            **overrides: settings changed for this search, by name: ``budget=20, rerank=0``.

        Raises:
            LexedgeError: one line naming the setting that is out of range, or a query that
                is not valid text or longer than :data:`MAX_QUERY_CHARS`.
            TypeError: ``settings`` is not a ``SearchSettings``, or an override names none
                of its fields.
        """
        if settings is None:
            settings = SearchSettings(**overrides)
        elif not isinstance(settings, SearchSettings):
            raise TypeError(f"settings: expected SearchSettings, got {type(settings).__name__}"
                            " (give budget, rerank … as keywords)")
        else:
            settings = settings.replace(**overrides)
        check_query(query)
        if self.follow:
            self.refresh()
        # refused, when out of the reranker's reach, before any work
        tokens = self.rerank_tokens_for(settings) if settings.rerank > 0 else None
        timings: dict[str, float] = {}
        started = time.perf_counter()
        # analysed once: BM25 ranks by these terms, and each hit shows those it matches
        query_terms = self.index.analyzer.tokens(query)
        candidates = self.first_stage(query, settings, timings, query_terms) \
            if query.strip() else []
        documents = {doc: self.index.document(doc) for doc, _, _ in candidates}
        if settings.filters:  # already chosen before ranking; a last check costs nothing
            candidates = [c for c in candidates if matches(documents[c[0]], settings.filters)]
        reranked, stored = 0, False
        weight = self.rerank_weight if settings.rerank_weight is None \
            else float(settings.rerank_weight)
        if not 0.0 <= weight <= 1.0:  # the bundle's
            raise LexedgeError(f"rerank weight {weight:g}: must be within [0, 1]")
        options = {} if tokens is None else {"passage_max_length": tokens}
        if self.reranker is not None and settings.rerank > 0 and candidates:
            stage = time.perf_counter()
            head = candidates[:settings.rerank]
            stored = self.stored_states is not None and tokens == self.stored_states.tokens
            if stored:  # the passages' states were computed at index time: encode the query
                scores = self.reranker.score_states(query, self.stored_states.get(
                    [self.index.row_of(d) for d, _, _ in head], [d for d, _, _ in head]))
            else:
                scores = self.reranker.score(
                    query, [documents[d].indexed_text for d, _, _ in head], **options)
            per_stage = {doc: per for doc, _, per in head}
            candidates = [(doc, final, dict(per_stage[doc], rerank=raw)) for doc, final, raw
                          in interpolate([(d, s) for d, s, _ in head], scores, weight)] \
                + candidates[settings.rerank:]
            reranked = len(head)
            timings["rerank"] = _ms(stage)
        hits, shown = [], candidates[:settings.top]
        # each hit's matched terms as the index found them when it analysed the hit
        held = self.index.bm25.terms_held([doc for doc, _, _ in shown], query_terms)
        for rank, ((doc, score, per_stage), doc_held) in enumerate(zip(shown, held), start=1):
            document, terms = documents[doc], longest_first(doc_held)
            hits.append(Hit(rank, doc, document.title, document.text,
                            snippet(document.text, terms), score,
                            {k: v for k, v in per_stage.items() if v is not None}, terms,
                            document.metadata))
        timings["total"] = _ms(started)
        # what was done: the re-ranked count, and alpha 0 where there is no dense index
        done = {"budget": settings.budget, "pool": settings.pool, "rerank": reranked,
                "alpha": self.alpha_for(settings) if self.has_dense else 0.0,
                "fusion": settings.fusion,
                "filters": dict(settings.filters), "rerank_weight": weight if reranked else None,
                "rerank_tokens": tokens if reranked else None,
                "rerank_states": ("stored" if stored else "live") if reranked else None}
        return SearchResult(query, hits, timings, done)

    def rerank_tokens_for(self, settings: SearchSettings) -> int | None:
        """The tokens of each passage a late-interaction reranker reads in a search with
        ``settings``: their ``rerank_tokens``, else the length the bundle chose for the
        index's language; ``None`` for a cross-encoder or no reranker.

        Raises:
            LexedgeError: one line, when ``rerank_tokens`` asks a cross-encoder, or more
                tokens than the model reads.
        """
        tokens = settings.rerank_tokens
        if not isinstance(self.reranker, OnnxLateInteraction):
            if tokens is not None and self.reranker is not None:
                raise LexedgeError(f"rerank tokens {tokens}: this bundle's reranker is a "
                                   f"cross-encoder, which reads each query-passage pair to "
                                   f"its own {self.reranker.max_length} tokens")
            return None
        if tokens is None:
            return self.passage_tokens
        if tokens > self.reranker.max_length:
            raise LexedgeError(f"rerank tokens {tokens}: must be at most "
                               f"{self.reranker.max_length} (this bundle's reranker reads no "
                               "further)")
        return tokens

    def search_many(self, queries, settings: SearchSettings | None = None,
                    **overrides) -> list[SearchResult]:
        """Answer each of ``queries`` with the same settings, in order (a batch: an
        evaluation, a list of contract clauses). Every query is checked before any is run."""
        queries = list(queries)
        for query in queries:
            check_query(query)
        if settings is None:
            settings = SearchSettings(**overrides)
            overrides = {}
        return [self.search(query, settings, **overrides) for query in queries]


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


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
