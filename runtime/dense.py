"""The dense index: nearest neighbours of a query among the documents' normalised embeddings.

Up to :data:`EXACT_LIMIT` vectors an index build stores them for exact search
(:mod:`~lexedge.runtime.exact`); above it, :class:`DenseIndex` is an HNSW graph (hnswlib).
:func:`build_dense` chooses, :func:`load_dense` reads either. Labels are the documents' rows
in the index, so the dense index, BM25 and the document store share one numbering.
hnswlib's own binary format holds the graph (no pickle); removal uses ``mark_deleted`` so an
incremental update never rebuilds the graph.

The ``hnswlib`` module comes from ``chroma-hnswlib`` (issue 23): the same API, with wheels for
Linux, macOS and Windows on x86-64 and ARM64, where ``hnswlib`` 0.8 is a source distribution
that needs a C++ compiler on every install. The two write different graph files (neither reads
the other's), so each graph records the library that wrote it and a graph from the other one
is refused with the command that rebuilds it.
"""

from __future__ import annotations

import functools
import json
from importlib import metadata
from pathlib import Path

import numpy as np

from .errors import LexedgeError
from .exact import KIND as EXACT_KIND
from .exact import PARAMS_FILE, ExactIndex

GRAPH_FILE = "hnsw.bin"

#: An index of at most this many vectors is searched exactly, above it through an HNSW graph.
#: Scoring every vector costs time linear in their number (one BLAS thread, 384 dimensions:
#: 2.8 ms per query for 58,513 vectors, 12.9 ms at this limit) and no more memory than the
#: graph, which stores the vectors too; the graph's single-threaded build is what grows slow
#: (27 s for 58,513 vectors, where storing them takes 0.1 s; bench/results/dense_exact.md).
EXACT_LIMIT = 250_000


@functools.cache
def hnsw_library() -> str:
    """The distribution that provides ``hnswlib`` here, with its version (looked up once)."""
    for distribution in ("chroma-hnswlib", "hnswlib"):
        try:
            return f"{distribution} {metadata.version(distribution)}"
        except metadata.PackageNotFoundError:
            continue
    return "hnswlib (unknown version)"


class GraphFormatError(LexedgeError):
    """A graph file written by another HNSW library than the one installed."""


#: A filter that allows at most this many documents is searched exactly, over their stored
#: vectors (a few ms); a wider one through the graph, whose filtered search keeps its speed
#: while enough of the graph is allowed.
EXACT_FILTER_LIMIT = 5_000


def ef_for_budget(budget: int) -> int:
    """Search breadth tied to the retrieval budget K: hnswlib needs ef >= K, and recall at K
    keeps improving up to about 2K (measured on real embeddings, see bench/)."""
    return max(64, 2 * budget)


class DenseIndex:
    """An inner-product HNSW graph over L2-normalised vectors (inner product = cosine)."""

    def __init__(self, graph, dimension: int, params: dict, deleted=()):
        self.graph = graph
        self.dimension = dimension
        self.params = params
        self.deleted = set(int(label) for label in deleted)
        self._refresh_count()

    def _refresh_count(self) -> None:
        present = set(self.graph.get_ids_list())
        self.deleted &= present  # a replaced slot's old label is gone from the graph
        self._live = len(present) - len(self.deleted)

    @classmethod
    def build(cls, vectors: np.ndarray, labels: np.ndarray | None = None, m: int = 32,
              ef_construction: int = 200, threads: int = 1, seed: int = 0) -> "DenseIndex":
        import hnswlib

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) == 0:
            raise LexedgeError(f"cannot build a dense index from an array of shape {vectors.shape}")
        labels = np.arange(len(vectors)) if labels is None else np.asarray(labels)
        graph = hnswlib.Index(space="ip", dim=vectors.shape[1])
        graph.init_index(max_elements=len(vectors), M=m, ef_construction=ef_construction,
                         random_seed=seed, allow_replace_deleted=True)
        # One thread by default: hnswlib's graph depends on the order of insertion, and with
        # several threads that order varies, so the same vectors gave different graphs (1 in
        # 600 queries with another top 100, issue 20). Same vectors, same index.
        graph.add_items(vectors, labels, num_threads=threads)
        return cls(graph, vectors.shape[1], {"kind": "hnsw", "space": "ip", "m": m,
                                             "ef_construction": ef_construction,
                                             "library": hnsw_library()})

    def __len__(self) -> int:
        return self._live

    def add(self, vectors: np.ndarray, labels: np.ndarray) -> None:
        """Add (or replace, for labels already present) vectors, growing the graph if needed."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        needed = self.graph.element_count + len(vectors)
        if needed > self.graph.get_max_elements():
            self.graph.resize_index(max(needed, int(self.graph.get_max_elements() * 1.5)))
        labels = np.asarray(labels)
        revived = [int(l) for l in labels if int(l) in self.deleted]
        for label in revived:  # re-adding a removed document brings it back
            self.graph.unmark_deleted(label)
            self.deleted.discard(label)
        self.graph.add_items(vectors, labels, num_threads=1, replace_deleted=True)
        self._refresh_count()

    def vectors(self, labels) -> np.ndarray:
        """The stored vectors of ``labels``, float32 [len(labels), dimension]."""
        return np.asarray(self.graph.get_items(list(labels)), dtype=np.float32).reshape(
            -1, self.dimension)

    def remove(self, labels) -> None:
        for label in labels:
            label = int(label)
            if label not in self.deleted:
                self.graph.mark_deleted(label)
                self.deleted.add(label)
        self._refresh_count()

    def search(self, queries: np.ndarray, k: int, ef: int | None = None,
               allowed: frozenset[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` labels and cosine scores per query row, best first; with ``allowed``,
        among those labels only (a filter): exactly over their vectors when there are at
        most :data:`EXACT_FILTER_LIMIT`, else through the graph's own filter."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if allowed is not None and len(allowed) <= EXACT_FILTER_LIMIT:
            return self._exact(queries, k, sorted(allowed))
        k = min(k, len(self) if allowed is None else len(allowed))
        if k <= 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.int64), empty.astype(np.float32)
        self.graph.set_ef(max(ef or ef_for_budget(k), k))
        try:
            labels, distances = self.graph.knn_query(
                queries, k=k, num_threads=1,
                filter=None if allowed is None else allowed.__contains__)
        except RuntimeError:  # the filtered walk found fewer than k: search them exactly
            if allowed is None:
                raise
            return self._exact(queries, k, sorted(allowed))
        return labels.astype(np.int64), (1.0 - distances).astype(np.float32)

    def _exact(self, queries: np.ndarray, k: int, labels: list[int],
               ) -> tuple[np.ndarray, np.ndarray]:
        return ExactIndex(self.vectors(labels), np.asarray(labels, dtype=np.int64)).search(
            queries, k)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        self.graph.save_index(str(directory / GRAPH_FILE))
        (directory / PARAMS_FILE).write_text(json.dumps(
            {**self.params, "library": hnsw_library(), "dimension": self.dimension,
             "deleted": sorted(self.deleted)}), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path, params: dict | None = None) -> "DenseIndex":
        """The graph in ``directory``; ``params``: its ``dense.json``, if already read."""
        import hnswlib

        directory = Path(directory)
        params = dict(params or _read_params(directory))
        dimension, deleted = params.pop("dimension"), params.pop("deleted", [])
        # graphs written before the library was recorded came from hnswlib 0.8
        written_by = params.get("library", "hnswlib 0.8")
        here = hnsw_library()
        if written_by.split()[0] != here.split()[0]:
            raise GraphFormatError(f"{directory / GRAPH_FILE}: written by {written_by}, which "
                                   f"this lexedge ({here}) cannot read")
        graph = hnswlib.Index(space=params["space"], dim=dimension)
        try:
            graph.load_index(str(directory / GRAPH_FILE), allow_replace_deleted=True)
        except RuntimeError as error:
            raise GraphFormatError(f"{directory / GRAPH_FILE}: unreadable ({error})") from None
        return cls(graph, dimension, params, deleted)


def _read_params(directory: Path) -> dict:
    path = directory / PARAMS_FILE
    if not path.is_file():
        raise LexedgeError(f"{directory}: no dense index ({PARAMS_FILE} missing)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise LexedgeError(f"{path}: malformed JSON ({error})") from None


def build_dense(vectors: np.ndarray, labels: np.ndarray | None = None,
                ) -> ExactIndex | DenseIndex:
    """The dense index a build writes: exact up to :data:`EXACT_LIMIT` vectors, else a graph."""
    kind = ExactIndex if len(vectors) <= EXACT_LIMIT else DenseIndex
    return kind.build(vectors, labels)


def load_dense(directory: str | Path) -> ExactIndex | DenseIndex:
    """Read the dense index in ``directory``, of either kind (one without a ``kind`` is a
    graph: written before exact search existed)."""
    directory = Path(directory)
    params = _read_params(directory)
    kind = params.get("kind", "hnsw")
    if kind == EXACT_KIND:
        return ExactIndex.load(directory, params)
    if kind != "hnsw":
        raise LexedgeError(f"{directory / PARAMS_FILE}: dense index kind {kind!r} is not one "
                           f"this lexedge reads (hnsw, {EXACT_KIND}); rebuild the index")
    return DenseIndex.load(directory, params)


def fitted(index: ExactIndex | DenseIndex) -> ExactIndex | DenseIndex:
    """``index``, or, for an exact one that updates grew past :data:`EXACT_LIMIT`, a graph of
    its live vectors (labels kept)."""
    if not isinstance(index, ExactIndex) or len(index) <= EXACT_LIMIT:
        return index
    live = np.asarray([label for label in index.labels.tolist() if label not in index.deleted])
    return DenseIndex.build(index.vectors(live), live)
