"""Exact inner-product search over stored vectors: every vector scored by one matrix product.

Below :data:`~lexedge.runtime.dense.EXACT_LIMIT` vectors this is the dense index an index build
writes, instead of an HNSW graph (:mod:`~lexedge.runtime.dense`). On 2 cores the graph of the
full STARD corpus (58,513 x 384) took 28 s to build, single-threaded for determinism
(issue 20), a quarter of the whole build with the built-in bundle; scoring every vector
takes about 2.8 ms per query there and finds the true top K, where the graph found 99.5 % of
it (``bench/results/dense_exact.md``).

Files: ``vectors.npy`` (float32 [n, dimension], row i holds label i's vector), ``labels.npy``
(int64 [n]) and ``dense.json`` (``kind``, ``dimension``, ``deleted``). numpy's own format,
read with ``allow_pickle=False``; the vectors are memory-mapped, so several processes serving
one index share them.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from . import blas
from .errors import LexedgeError

PARAMS_FILE = "dense.json"
VECTORS_FILE = "vectors.npy"
LABELS_FILE = "labels.npy"
KIND = "exact"


def _empty(rows: int) -> tuple[np.ndarray, np.ndarray]:
    empty = np.zeros((rows, 0))
    return empty.astype(np.int64), empty.astype(np.float32)


class ExactIndex:
    """Inner product (cosine, the vectors being L2-normalised) against every stored vector.

    Same interface as :class:`~lexedge.runtime.dense.DenseIndex`: ``build``, ``add``,
    ``remove``, ``search``, ``vectors``, ``save``, ``load``. A removed label stays stored
    (marked deleted) until it is added again, as in the graph.

    Example:
        >>> index = ExactIndex.build(np.eye(3, dtype=np.float32))
        >>> index.search(np.array([0, 1, 0], dtype=np.float32), k=1)[0].tolist()
        [[1]]
    """

    def __init__(self, vectors: np.ndarray, labels: np.ndarray, deleted=()):
        self.matrix, self.labels = vectors, np.asarray(labels, dtype=np.int64)
        self.dimension = int(vectors.shape[1])
        self.params = {"kind": KIND}
        self.deleted = set(int(label) for label in deleted)

    @functools.cached_property
    def _positions(self) -> dict[int, int]:
        """Label → row of the matrix; built on first use (a plain search needs none)."""
        return dict(zip(self.labels.tolist(), range(len(self.labels))))

    @classmethod
    def build(cls, vectors: np.ndarray, labels: np.ndarray | None = None) -> "ExactIndex":
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) == 0:
            raise LexedgeError(f"cannot build a dense index from an array of shape {vectors.shape}")
        labels = np.arange(len(vectors)) if labels is None else np.asarray(labels)
        if len(set(labels.tolist())) != len(labels):
            raise LexedgeError("dense index: the same label given twice")
        return cls(vectors, labels)

    def __len__(self) -> int:
        return len(self.labels) - len(self.deleted)

    def add(self, vectors: np.ndarray, labels: np.ndarray) -> None:
        """Add vectors, replacing those of labels already stored (a removed one comes back)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        labels = [int(label) for label in np.asarray(labels)]
        self.matrix = np.array(self.matrix)  # a writable copy of the memory-mapped file
        new_rows, new_labels = [], []
        for vector, label in zip(vectors, labels):
            self.deleted.discard(label)
            if label in self._positions:
                self.matrix[self._positions[label]] = vector
            else:
                self._positions[label] = len(self.labels) + len(new_labels)
                new_rows.append(vector)
                new_labels.append(label)
        if new_rows:
            self.matrix = np.concatenate([self.matrix, np.stack(new_rows)])
            self.labels = np.concatenate([self.labels, np.asarray(new_labels, dtype=np.int64)])

    def remove(self, labels) -> None:
        self.deleted.update(int(label) for label in labels if int(label) in self._positions)

    def vectors(self, labels) -> np.ndarray:
        """The stored vectors of ``labels``, float32 [len(labels), dimension]."""
        return np.asarray(self.matrix[[self._positions[int(label)] for label in labels]],
                          dtype=np.float32)

    def search(self, queries: np.ndarray, k: int, ef: int | None = None,
               allowed: frozenset[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` labels and cosine scores per query row, best first (ties: the one
        stored first); with ``allowed``, among those labels only. ``ef`` is the graph's search
        breadth, taken for the same call and not needed here."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if allowed is None:
            positions = None if not self.deleted else np.flatnonzero(
                ~np.isin(self.labels, np.fromiter(self.deleted, dtype=np.int64)))
        else:
            positions = np.asarray(sorted(self._positions[label] for label in allowed
                                          if label in self._positions
                                          and label not in self.deleted), dtype=np.int64)
        candidates = self.matrix if positions is None else self.matrix[positions]
        k = min(k, len(candidates))
        if k <= 0:
            return _empty(len(queries))
        with blas.one_blas_thread():  # why: lexedge.runtime.blas
            scores = queries @ candidates.T
        if k < scores.shape[1]:  # only the top k need sorting
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        else:
            top = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.lexsort((top, -top_scores))
        best = np.take_along_axis(top, order, axis=1)
        rows = best if positions is None else positions[best]
        return self.labels[rows], np.take_along_axis(scores, best, axis=1).astype(np.float32)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        np.save(directory / VECTORS_FILE, np.ascontiguousarray(self.matrix, dtype=np.float32))
        np.save(directory / LABELS_FILE, self.labels)
        (directory / PARAMS_FILE).write_text(json.dumps(
            {"kind": KIND, "dimension": self.dimension, "deleted": sorted(self.deleted)}),
            encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path, params: dict) -> "ExactIndex":
        """The index in ``directory``, whose ``dense.json`` holds ``params``."""
        directory = Path(directory)
        try:
            matrix = np.load(directory / VECTORS_FILE, mmap_mode="r", allow_pickle=False)
            labels = np.load(directory / LABELS_FILE, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise LexedgeError(f"{directory / VECTORS_FILE}: unreadable ({error})") from None
        if matrix.ndim != 2 or matrix.shape != (len(labels), params["dimension"]) \
                or matrix.dtype != np.float32:
            raise LexedgeError(f"{directory / VECTORS_FILE}: {matrix.dtype} {matrix.shape}, "
                               f"expected float32 ({len(labels)}, {params['dimension']})")
        return cls(matrix, labels, params.get("deleted", []))
