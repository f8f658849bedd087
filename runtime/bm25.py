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

import functools
import json
import logging
import os
import sys
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
# (term, document) pairs scored at once when a build makes the score matrix
PAIR_BLOCK = 1 << 20


def _import_bm25s():
    """bm25s, with JAX (which it runs at import wherever JAX is installed) kept off the GPU,
    and without the scipy it would import for nothing.

    On a GPU machine with JAX, that import otherwise claims 75 % of the GPU's memory per
    process, and the trainer beside it ran out of memory (seen on an H100). lexedge never uses
    JAX; a value the caller set is kept.

    bm25s imports ``scipy.sparse`` whenever scipy is installed (the training and export
    extras bring it), only to offer a CSC backend lexedge never asks for: its matrix is built
    by :func:`_bm25_class` and searched with numpy. That import was 134 ms of a cold
    ``lexedge search`` (``python -X importtime``). So unless scipy is loaded already, bm25s
    is imported as where scipy is absent (the base install's case), and ``scipy.sparse``
    stays importable for whatever needs it later. (Only a thread importing ``scipy.sparse``
    at that very instant would find it missing; lexedge's parts that use scipy import it
    when they load, before they open an index.)
    """
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if "bm25s" in sys.modules:
        return sys.modules["bm25s"]
    hidden = "scipy.sparse" not in sys.modules
    if hidden:
        sys.modules["scipy.sparse"] = None  # an import of it fails at once, as if absent
    try:
        import bm25s
    finally:
        if hidden and sys.modules.get("scipy.sparse", False) is None:
            del sys.modules["scipy.sparse"]
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
        self._rows: dict[str, int] | None = None  # doc id -> row, made on first need

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
        retriever = _bm25_class()(k1=k1, b=b)
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
                    mask: np.ndarray | None = None,
                    query_terms: Sequence[list[str]] | None = None,
                    ) -> list[list[tuple[str, float]]]:
        """Top-``k`` ``(doc_id, score)`` per query, best first; documents scoring 0 (no shared
        term) are left out, and so are the rows ``mask`` holds 0 for (a filter).
        ``query_terms``: each query as this index's analyzer gives it, when the caller has
        analysed them already (a search shows the terms its hits match)."""
        if not queries:
            return []
        k = min(k, len(self.doc_ids))
        if query_terms is None:
            query_terms = [self.analyzer.tokens(query) for query in queries]
        with _quiet_bm25s():
            # numpy top-k: bm25s's default takes JAX wherever it is installed.
            rows, scores = self.retriever.retrieve(list(query_terms), k=k,
                                                   show_progress=False, n_threads=1,
                                                   backend_selection="numpy", weight_mask=mask)
        results = []
        for row, row_scores in zip(rows, scores):
            results.append([(self.doc_ids[int(i)], float(s))
                            for i, s in zip(row, row_scores) if s > 0])
        return results

    def search(self, query: str, k: int = 10, mask: np.ndarray | None = None,
               query_terms: list[str] | None = None) -> list[tuple[str, float]]:
        return self.search_many([query], k, mask,
                                None if query_terms is None else [query_terms])[0]

    def terms_held(self, doc_ids: Sequence[str], terms: Iterable[str]) -> list[set[str]]:
        """Which of ``terms`` (as this index's analyzer gives them) each of ``doc_ids``
        holds, in the order given: what analysing each document's indexed text again would
        find, read from the score matrix instead (a term's column lists the rows of the
        documents that hold it, in row order). A search shows each hit's matched terms this
        way: MeCab over the 10 shown Japanese articles was a third of a search."""
        held: list[set[str]] = [set() for _ in doc_ids]
        if not held:
            return held
        if self._rows is None:
            self._rows = {doc_id: row for row, doc_id in enumerate(self.doc_ids)}
        # a document this index does not hold (none should reach here) holds no term: row -1
        rows = np.array([self._rows.get(doc_id, -1) for doc_id in doc_ids], dtype=np.int64)
        scores, vocabulary = self.retriever.scores, self.retriever.vocab_dict
        indptr, indices = scores["indptr"], scores["indices"]
        for term in set(terms):
            column = vocabulary.get(term)
            # bm25s' empty term, numbered after the last column, has none
            if column is None or column + 1 >= len(indptr):
                continue
            documents = indices[indptr[column]:indptr[column + 1]]
            if not len(documents):
                continue
            found = documents[np.minimum(np.searchsorted(documents, rows),
                                         len(documents) - 1)] == rows
            for position in np.flatnonzero(found):
                held[position].add(term)
        return held

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
    """Each document's term ids, stored as compact int32 arrays (as lists they would hold
    about 36 bytes per term). :func:`_bm25_class`'s index reads the arrays; bm25s' own code,
    which loops over each document's ids in Python, gets them as lists, one document at a
    time (Python ints hash and count far faster than numpy scalars)."""

    def __init__(self, arrays: list[np.ndarray]):
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, row: int) -> list[int]:
        return self.arrays[row].tolist()

    def __iter__(self):
        return (ids.tolist() for ids in self.arrays)


@functools.cache
def _bm25_class():
    """``bm25s.BM25`` with its score matrix built by numpy over the whole corpus.

    bm25s builds it document by document in Python (a set intersection for the document
    frequencies, a ``Counter`` per document, then a pure-Python CSC sort): 9.0 s for the full
    STARD corpus's 13.5 million terms, on one core, at the end of a build. Here one sort of
    (term, document) keys counts the pairs and puts them in CSC order, and bm25s' own
    functions give the idf and the term-frequency part, so the BM25 formula stays bm25s':
    the same arrays bit for bit (the comparison test builds both) in 0.87 s
    (``bench/bm25_matrix.py``). ``build_index_from_ids`` is the method bm25s' docs name for
    overriding; the variants that need a non-occurrence array (BM25L, BM25+), and a corpus
    not given as :class:`_TermLists`, take bm25s' way.
    """
    bm25s = _import_bm25s()
    from bm25s import scoring

    class VectorisedBM25(bm25s.BM25):
        def build_index_from_ids(self, unique_token_ids, corpus_token_ids, show_progress=True,
                                 leave_progress=False):
            if not isinstance(corpus_token_ids, _TermLists) \
                    or self.method in self.methods_requiring_nonoccurrence:
                return super().build_index_from_ids(unique_token_ids, corpus_token_ids,
                                                    show_progress, leave_progress)
            self.nonoccurrence_array = None  # as bm25s sets it for these variants
            arrays = corpus_token_ids.arrays
            n_docs, n_vocab = len(arrays), len(unique_token_ids)
            lengths = np.array([len(ids) for ids in arrays])
            average_length = lengths.mean()  # as bm25s computes it, for the same rounding
            # one int64 key per term occurrence, the term in the high half, made and sorted
            # in place: the sort counts each (term, document) pair and puts the pairs in CSC
            # order (np.unique took 2.4 s against 0.3 for the same result)
            total = int(lengths.sum())
            keys = np.empty(total, dtype=np.int64)
            np.concatenate(arrays, out=keys)
            keys <<= 32
            keys |= np.repeat(np.arange(n_docs, dtype=np.int32), lengths)
            keys.sort()
            first = np.empty(total, dtype=bool)
            first[:1] = True
            np.not_equal(keys[1:], keys[:-1], out=first[1:])
            starts = np.flatnonzero(first)
            del first

            def blocks():
                """(slice, terms, documents, counts) of the pairs, a block at a time: a
                whole-corpus array per step of the formula cost more in fresh memory than
                in arithmetic (STARD: 8.6 million pairs)."""
                for low in range(0, len(starts), PAIR_BLOCK):
                    high = min(low + PAIR_BLOCK, len(starts))
                    ends = np.append(starts[low + 1:high + 1],
                                     [total] if high == len(starts) else [])
                    pairs = keys[starts[low:high]]
                    yield slice(low, high), pairs >> 32, pairs & 0xFFFFFFFF, \
                        ends - starts[low:high]

            frequencies = np.zeros(n_vocab, dtype=np.int64)
            for _, terms, _, _ in blocks():
                frequencies += np.bincount(terms, minlength=n_vocab)
            idf = scoring._build_idf_array(
                doc_frequencies=dict(enumerate(frequencies.tolist())), n_docs=n_docs,
                compute_idf_fn=scoring._select_idf_scorer(self.idf_method), dtype=self.dtype)
            tfc = scoring._select_tfc_scorer(self.method)
            data = np.empty(len(starts), dtype=self.dtype)
            rows = np.empty(len(starts), dtype=self.int_dtype)
            for block, terms, documents, counts in blocks():
                rows[block] = documents
                data[block] = idf[terms] * tfc(
                    tf_array=counts.astype(self.dtype), l_d=lengths[documents],
                    l_avg=average_length, k1=self.k1, b=self.b, delta=self.delta)
            indptr = np.zeros(n_vocab + 1, dtype=np.int64)
            np.cumsum(frequencies, out=indptr[1:])
            return {"data": data, "indices": rows, "indptr": indptr, "num_docs": n_docs}

    return VectorisedBM25


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
