"""Metadata filters, applied before ranking (issue 23): ``--filter law=民法`` finds the
articles of 民法 that match the query even when none of them is in the unfiltered top K.

A filter is ``KEY=PATTERN``. KEY is a metadata field of the indexed documents, or ``title``
or ``id``; a key no document has is refused with the fields the index does have (a typo
must not silently return nothing). PATTERN is a glob (``*``, ``?``, ``[…]``, as in a shell,
``*`` also crossing ``/``: ``source=*.md``); one ending in ``/`` names a folder and
everything below it (``source=contracts/``); anything else must equal the value. Several
filters must all hold.

The documents a set of filters allows are found once per index version by reading each
document's metadata, then each retriever searches only them: BM25 through bm25s'
``weight_mask``, an exact dense index over their vectors only, a graph through hnswlib's ``filter`` (or,
when few documents are allowed, exactly over their stored vectors).
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

import numpy as np

from .datasets import Document
from .errors import LexedgeError

#: Keys every document has besides its metadata fields.
BUILT_IN_KEYS = ("title", "id")
_GLOB = set("*?[")


def value_of(document: Document, key: str) -> str | None:
    if key == "id":
        return document.id
    if key in document.metadata:
        return str(document.metadata[key])
    return document.title if key == "title" else None


def pattern_matches(value: str | None, pattern: str) -> bool:
    if value is None:
        return False
    if pattern.endswith(("/", "\\")):  # a folder: what lies below it
        return value.startswith(pattern)
    if _GLOB & set(pattern):
        return fnmatchcase(value, pattern)
    return value == pattern


def matches(document: Document, filters: dict) -> bool:
    """Whether ``document`` passes every filter."""
    return all(pattern_matches(value_of(document, key), pattern)
               for key, pattern in filters.items())


@dataclass
class Allowed:
    """The documents a set of filters allows: store rows (the dense index's labels) and ids."""

    rows: frozenset[int]
    ids: frozenset[str]
    _mask: np.ndarray | None = None

    def bm25_mask(self, doc_ids) -> np.ndarray:
        """1 for each BM25 row that is allowed, else 0 (kept: the rows do not change)."""
        if self._mask is None:
            self._mask = np.fromiter((doc_id in self.ids for doc_id in doc_ids),
                                     dtype=np.float32, count=len(doc_ids))
        return self._mask


class FilterCache:
    """The allowed documents of each set of filters asked of one index version.

    Args:
        index: the open index (its document store and deleted rows).
        size: how many filter sets to keep.
    """

    def __init__(self, index, size: int = 32):
        self.index, self.size = index, size
        self._allowed: dict[tuple, Allowed] = {}
        self._keys: frozenset[str] | None = None

    def keys(self) -> frozenset[str]:
        """Every field some live document has, and the built-in keys."""
        if self._keys is None:
            found = set(BUILT_IN_KEYS)
            for document in self._documents():
                found.update(document[1].metadata)
            self._keys = frozenset(found)
        return self._keys

    def allowed(self, filters: dict) -> Allowed:
        unknown = sorted(set(filters) - self.keys())
        if unknown:
            raise LexedgeError(f"--filter {unknown[0]}=…: no document in this index has the "
                               f"field {unknown[0]!r} (fields: {', '.join(sorted(self.keys()))})")
        key = tuple(sorted(filters.items()))
        if key not in self._allowed:
            if len(self._allowed) >= self.size:
                self._allowed.pop(next(iter(self._allowed)))
            rows, ids = set(), set()
            for row, document in self._documents():
                if matches(document, filters):
                    rows.add(row)
                    ids.add(document.id)
            self._allowed[key] = Allowed(frozenset(rows), frozenset(ids))
        return self._allowed[key]

    def _documents(self):
        deleted = self.index.deleted
        for row in range(len(self.index.docs)):
            if row not in deleted:
                yield row, self.index.docs.get(row)
