"""A persistent search index: a folder holding the BM25 index, the document store and a
``manifest.json`` that records how it was made (analyzer, BM25 parameters, source hash,
versions), so that queries are analysed exactly as the documents were.

Layout::

    IDX/manifest.json
    IDX/bm25/             bm25s arrays (no pickle) + doc ids
    IDX/docs.jsonl        one document per line
    IDX/docs.offsets.npy  byte offset of each line
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

from .analysis import Analyzer, detect_language, get_analyzer
from .bm25 import BM25Index
from .datasets import iter_corpus
from .docstore import DocStore, write_docstore
from .errors import LexedgeError
from .storage import atomic_directory, sha256_file

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


def choose_analyzer(corpus_path: Path, analyzer: str = "auto") -> Analyzer:
    """``auto`` samples the start of the corpus to pick ``ja``, ``zh`` or ``word``."""
    if analyzer != "auto":
        return get_analyzer(analyzer)
    sample = (d.indexed_text for d in itertools.islice(iter_corpus(corpus_path), 2000))
    return get_analyzer(detect_language(sample))


@dataclass
class Index:
    path: Path
    manifest: dict
    bm25: BM25Index
    docs: DocStore

    @property
    def analyzer(self) -> Analyzer:
        return self.bm25.analyzer

    @classmethod
    def build(cls, corpus_path: str | Path, out: str | Path, analyzer: str = "auto",
              k1: float = 1.2, b: float = 0.75, progress: bool = True) -> "Index":
        """Index a BEIR ``corpus.jsonl`` into ``out`` atomically: the old index (if any) stays
        usable until the new one is complete."""
        from lexedge import __version__

        corpus_path = Path(corpus_path)
        chosen = choose_analyzer(corpus_path, analyzer)
        started = time.perf_counter()
        with atomic_directory(out) as staging:
            documents = write_docstore(staging, iter_corpus(corpus_path))
            bm25 = BM25Index.build(documents, chosen, k1=k1, b=b, progress=progress)
            (staging / "bm25").mkdir()
            bm25.save(staging / "bm25")
            manifest = {
                "format": FORMAT_VERSION,
                "lexedge_version": __version__,
                "analyzer": chosen.to_manifest(),
                "bm25": {"k1": k1, "b": b},
                "documents": len(bm25),
                "source": {"path": str(corpus_path.resolve()),
                           "sha256": sha256_file(corpus_path)},
                "build_seconds": round(time.perf_counter() - started, 3),
            }
            (staging / MANIFEST_FILE).write_text(
                json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return cls.load(out)

    @classmethod
    def load(cls, path: str | Path) -> "Index":
        path = Path(path)
        manifest_path = path / MANIFEST_FILE
        if not manifest_path.is_file():
            raise LexedgeError(f"{path}: not a lexedge index (no {MANIFEST_FILE}); "
                               "build one with `lexedge index build`")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise LexedgeError(f"{manifest_path}: malformed JSON: {exc.msg}") from None
        if manifest.get("format") != FORMAT_VERSION:
            raise LexedgeError(f"{manifest_path}: index format {manifest.get('format')!r} is "
                               f"not supported (expected {FORMAT_VERSION}); rebuild the index")
        return cls(path, manifest, BM25Index.load(path / "bm25"), DocStore(path))

    def search(self, query: str, k: int = 10) -> list[dict]:
        """BM25 hits with title, text and score, best first."""
        from .snippets import matched_terms, snippet

        row_of = self._row_of()
        hits = []
        for rank, (doc_id, score) in enumerate(self.bm25.search(query, k), start=1):
            document = self.docs.get(row_of[doc_id])
            terms = matched_terms(self.analyzer, query, document.indexed_text)
            hits.append({"rank": rank, "id": doc_id, "title": document.title,
                         "score": score, "scores": {"bm25": score}, "matched_terms": terms,
                         "snippet": snippet(document.text, terms), "text": document.text,
                         "metadata": document.metadata})
        return hits

    def _row_of(self) -> dict[str, int]:
        if not hasattr(self, "_rows"):
            self._rows = {doc_id: row for row, doc_id in enumerate(self.bm25.doc_ids)}
        return self._rows
