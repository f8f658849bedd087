"""BM25 over lexedge's analyzers, stored and scored by ``bm25s``.

Documents are analysed one at a time and kept only as integer term ids, so building never holds
the corpus text. The saved index is ``bm25s``' own numpy arrays (no pickle) plus a JSON list of
document ids; it loads memory-mapped. Each document's analysed terms are saved too
(``terms.npy``, ``terms.offsets.npy``, ``terms.vocabulary.json``): bm25s has no incremental
update, so a change rebuilds the index, and with the terms kept it analyses only the documents
that changed (issue 23: adding 2 articles to a 12,116-article index re-analysed all of them
and took 31 s).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from .analysis import Analyzer, get_analyzer
from .datasets import Document
from .errors import LexedgeError

DOC_IDS_FILE = "doc_ids.json"
PARAMS_FILE = "lexedge_bm25.json"
TERMS_FILE = "terms.npy"
TERM_OFFSETS_FILE = "terms.offsets.npy"
VOCABULARY_FILE = "terms.vocabulary.json"


def _import_bm25s():
    """bm25s, with JAX (which it runs at import wherever JAX is installed) kept off the GPU.

    On a GPU machine with JAX, that import otherwise claims 75 % of the GPU's memory per
    process, and the trainer beside it ran out of memory (seen on an H100). lexedge never uses
    JAX; a value the caller set is kept.
    """
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import bm25s

    return bm25s


class BM25Index:
    """A BM25 index whose queries are analysed by the same analyzer as its documents.

    Args:
        retriever: a fitted ``bm25s.BM25``.
        doc_ids: the external id of each row, in index order.
        analyzer: the analyzer used for both documents and queries.
    """

    #: the saved files that only :meth:`changed` reads (a search never does)
    UPDATE_FILES = (TERMS_FILE, TERM_OFFSETS_FILE, VOCABULARY_FILE)

    def __init__(self, retriever, doc_ids: Sequence[str], analyzer: Analyzer,
                 terms: tuple[list[np.ndarray], list[str]] | None = None):
        self.retriever = retriever
        self.doc_ids = list(doc_ids)
        self.analyzer = analyzer
        self._terms = terms  # (term ids per document, vocabulary) of a new index, to save

    @classmethod
    def build(cls, documents: Iterable[Document], analyzer: Analyzer, k1: float = 1.2,
              b: float = 0.75, progress: bool = False) -> "BM25Index":
        """Index title and text of every document (one pass over the stream)."""
        vocabulary = _Vocabulary()
        token_ids: list[np.ndarray] = []
        doc_ids: list[str] = []
        documents = _with_progress(documents, progress, "analysing")
        for document in documents:
            token_ids.append(vocabulary.ids(analyzer.tokens(document.indexed_text)))
            doc_ids.append(document.id)
        return cls._from_terms(token_ids, vocabulary, doc_ids, analyzer, k1, b)

    @classmethod
    def _from_terms(cls, token_ids: list[np.ndarray], vocabulary: dict[str, int],
                    doc_ids: list[str], analyzer: Analyzer, k1: float, b: float,
                    ) -> "BM25Index":
        bm25s = _import_bm25s()

        if not doc_ids:
            raise LexedgeError("cannot build a BM25 index over an empty corpus")
        if not vocabulary:  # bm25s fails on an empty vocabulary with a bare ValueError
            raise LexedgeError(f"cannot build a BM25 index: no document has any text (none of "
                               f"the {len(doc_ids):,} documents has a word to index)")
        retriever = bm25s.BM25(k1=k1, b=b)
        with _quiet_bm25s():
            # a plain dict: bm25s looks query terms up in it, and an unknown one must stay
            # unknown, not be numbered
            retriever.index(bm25s.tokenization.Tokenized(ids=_TermLists(token_ids),
                                                         vocab=dict(vocabulary)),
                            show_progress=False)
        words = sorted(vocabulary, key=vocabulary.__getitem__)
        return cls(retriever, doc_ids, analyzer, terms=(token_ids, words))

    def changed(self, directory: str | Path, keep: Sequence[int],
                new_documents: Iterable[Document]) -> "BM25Index":
        """This index (saved in ``directory``) with only the rows ``keep`` (in that order)
        and ``new_documents`` after them: the kept rows' terms are read back, only the new
        documents are analysed. Equal to :meth:`build` over the same documents; an index
        saved without its terms (lexedge before 0.2) is rebuilt by :meth:`build` instead, by
        the caller."""
        directory = Path(directory)
        stored = np.load(directory / TERMS_FILE, mmap_mode="r")
        offsets = np.load(directory / TERM_OFFSETS_FILE)
        words = json.loads((directory / VOCABULARY_FILE).read_text(encoding="utf-8"))
        old = [np.asarray(stored[offsets[row]:offsets[row + 1]]) for row in keep]
        doc_ids = [self.doc_ids[row] for row in keep]
        vocabulary = _Vocabulary()
        # renumber the terms by first use, as a build over these documents would
        token_ids = []
        remap = np.full(len(words), -1, dtype=np.int64)
        for ids in old:
            fresh = np.unique(ids[remap[ids] < 0], return_index=True)
            for term in fresh[0][np.argsort(fresh[1], kind="stable")]:
                remap[term] = vocabulary[words[term]]
            token_ids.append(remap[ids].astype(np.int32))
        for document in new_documents:
            token_ids.append(vocabulary.ids(self.analyzer.tokens(document.indexed_text)))
            doc_ids.append(document.id)
        return self._from_terms(token_ids, vocabulary, doc_ids, self.analyzer, self.k1, self.b)

    @staticmethod
    def has_terms(directory: str | Path) -> bool:
        return (Path(directory) / TERMS_FILE).is_file()

    @property
    def k1(self) -> float:
        return float(self.retriever.k1)

    @property
    def b(self) -> float:
        return float(self.retriever.b)

    def __len__(self) -> int:
        return len(self.doc_ids)

    def search_many(self, queries: Sequence[str], k: int = 10,
                    mask: np.ndarray | None = None) -> list[list[tuple[str, float]]]:
        """Top-``k`` ``(doc_id, score)`` per query, best first; documents scoring 0 (no shared
        term) are left out, and so are the rows ``mask`` holds 0 for (a filter)."""
        if not queries:
            return []
        k = min(k, len(self.doc_ids))
        query_terms = [self.analyzer.tokens(query) for query in queries]
        with _quiet_bm25s():
            # numpy top-k: bm25s's default takes JAX wherever it is installed.
            rows, scores = self.retriever.retrieve(query_terms, k=k, show_progress=False,
                                                   n_threads=1, backend_selection="numpy",
                                                   weight_mask=mask)
        results = []
        for row, row_scores in zip(rows, scores):
            results.append([(self.doc_ids[int(i)], float(s))
                            for i, s in zip(row, row_scores) if s > 0])
        return results

    def search(self, query: str, k: int = 10,
               mask: np.ndarray | None = None) -> list[tuple[str, float]]:
        return self.search_many([query], k, mask)[0]

    def save(self, directory: str | Path) -> None:
        """Write into ``directory`` (callers make it atomic with
        :func:`~lexedge.runtime.storage.atomic_directory`)."""
        directory = Path(directory)
        with _quiet_bm25s():
            self.retriever.save(directory, show_progress=False)
        (directory / DOC_IDS_FILE).write_text(json.dumps(self.doc_ids, ensure_ascii=False),
                                              encoding="utf-8")
        (directory / PARAMS_FILE).write_text(json.dumps(
            {"analyzer": self.analyzer.to_manifest(), "k1": self.k1, "b": self.b,
             "documents": len(self.doc_ids)}, ensure_ascii=False), encoding="utf-8")
        if self._terms is not None:
            token_ids, words = self._terms
            np.save(directory / TERMS_FILE, np.concatenate(token_ids) if token_ids
                    else np.zeros(0, dtype=np.int32))
            np.save(directory / TERM_OFFSETS_FILE, np.concatenate(
                [[0], np.cumsum([len(ids) for ids in token_ids])]).astype(np.int64))
            (directory / VOCABULARY_FILE).write_text(json.dumps(words, ensure_ascii=False),
                                                     encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = True) -> "BM25Index":
        bm25s = _import_bm25s()

        directory = Path(directory)
        params_path = directory / PARAMS_FILE
        if not params_path.is_file():
            raise LexedgeError(f"{directory}: not a lexedge BM25 index ({PARAMS_FILE} missing)")
        params = json.loads(params_path.read_text(encoding="utf-8"))
        with _quiet_bm25s():
            retriever = bm25s.BM25.load(directory, mmap=mmap, show_progress=False)
        doc_ids = json.loads((directory / DOC_IDS_FILE).read_text(encoding="utf-8"))
        return cls(retriever, doc_ids, get_analyzer(params["analyzer"]))


class _Vocabulary(dict):
    """Term -> id, a new term taking the next id: numbered by first use."""

    def __missing__(self, term: str) -> int:
        self[term] = number = len(self)
        return number

    def ids(self, terms: Sequence[str]) -> np.ndarray:
        """The ids of ``terms`` (int32), new terms numbered as they come. The lookups run in
        C (``map`` over the dict's own ``__getitem__``; only a new term calls Python): the
        full STARD corpus's 13.5 million terms take 2.6 s instead of 4.4 with a generator of
        ``setdefault`` calls."""
        return np.fromiter(map(self.__getitem__, terms), dtype=np.int32, count=len(terms))


class _TermLists(Sequence):
    """Each document's term ids as a Python list, made one document at a time as ``bm25s``
    walks the corpus. Its indexing loops (document frequencies, term counts) iterate each
    document's ids in Python, and Python ints are hashed and counted far faster than numpy
    scalars: the full STARD corpus indexes in 2.7 s instead of 4.3 s. The ids stay stored
    as compact int32 arrays (as lists they would hold about 36 bytes per term)."""

    def __init__(self, arrays: list[np.ndarray]):
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, row: int) -> list[int]:
        return self.arrays[row].tolist()

    def __iter__(self):
        return (ids.tolist() for ids in self.arrays)


def _with_progress(items, enabled: bool, description: str):
    if not enabled:
        return items
    from tqdm import tqdm
    # disable=None: silent when stderr is not a terminal (CI logs, pipes).
    return tqdm(items, desc=description, unit=" docs", disable=None, mininterval=0.5)


class _quiet_bm25s:
    """bm25s logs at INFO on every call; keep the user's terminal for lexedge's own output."""

    def __enter__(self):
        self.logger = logging.getLogger("bm25s")
        self.level = self.logger.level
        self.logger.setLevel(logging.WARNING)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)
