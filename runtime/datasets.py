"""BEIR-layout datasets: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.

Every reader streams: the corpus is read one line at a time, so a 1 GB corpus is never held in
memory as text by this module (callers keep what they need, e.g. token ids). Bad input raises a
:class:`~lexedge.runtime.errors.DataError` whose message names the file and line.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError


@dataclass(frozen=True, slots=True)
class Document:
    """One retrievable unit: a statute article, a clause or a passage."""

    id: str
    text: str
    title: str = ""
    metadata: dict = field(default_factory=dict)

    @property
    def indexed_text(self) -> str:
        """Title and text together: both are searched (a title often carries the law's name)."""
        return f"{self.title}\n{self.text}" if self.title else self.text


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for every non-blank line of a JSON-lines file
    (gzip-compressed when its name ends in ``.gz``).

    Raises :class:`DataError` for a missing or empty file, bytes that are not UTF-8, malformed
    JSON, or a line holding something other than a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    records = 0
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    path, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})",
                    line_number) from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(path, f"malformed JSON: {exc.msg} at column {exc.colno}",
                                line_number) from None
            if not isinstance(record, dict):
                raise DataError(path, f"expected a JSON object, got {type(record).__name__}",
                                line_number)
            records += 1
            yield line_number, record
    if records == 0:
        raise DataError(path, "empty file: no records")


def _required_id(record: dict, path: Path, line_number: int) -> str:
    if "id" not in record and "_id" not in record:
        raise DataError(path, 'missing "id"', line_number)
    value = record.get("id", record.get("_id"))
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value) == "":
        raise DataError(path, f'"id" must be a non-empty string or integer, got {value!r}',
                        line_number)
    return str(value)


def _required_text(record: dict, path: Path, line_number: int) -> str:
    if "text" not in record:
        raise DataError(path, 'missing "text"', line_number)
    if not isinstance(record["text"], str):
        raise DataError(path, f'"text" must be a string, got {type(record["text"]).__name__}',
                        line_number)
    return record["text"]


def iter_corpus(path: str | Path) -> Iterator[Document]:
    """Stream the documents of a ``corpus.jsonl``: ``id``, ``text``, optional ``title``; any
    other field is kept as metadata. Duplicate ids are an error."""
    path = Path(path)
    seen: set[str] = set()
    for line_number, record in iter_jsonl(path):
        doc_id = _required_id(record, path, line_number)
        text = _required_text(record, path, line_number)
        if doc_id in seen:
            raise DataError(path, f'duplicate id "{doc_id}"', line_number)
        seen.add(doc_id)
        title = record.get("title") or ""
        if not isinstance(title, str):
            raise DataError(path, f'"title" must be a string, got {type(title).__name__}',
                            line_number)
        metadata = {k: v for k, v in record.items() if k not in ("id", "_id", "text", "title")}
        yield Document(doc_id, text, title, metadata)


def load_queries(path: str | Path) -> dict[str, str]:
    """Read ``queries.jsonl`` into ``{query_id: text}``; duplicate ids are an error."""
    path = Path(path)
    queries: dict[str, str] = {}
    for line_number, record in iter_jsonl(path):
        query_id = _required_id(record, path, line_number)
        text = _required_text(record, path, line_number)
        if query_id in queries:
            raise DataError(path, f'duplicate id "{query_id}"', line_number)
        queries[query_id] = text
    return queries


Qrels = dict[str, dict[str, int]]


def load_qrels(path: str | Path, query_ids: Iterable[str] | None = None,
               doc_ids: Iterable[str] | None = None) -> Qrels:
    """Read a qrels TSV (``query-id  corpus-id  score``, header optional) into
    ``{query_id: {doc_id: grade}}``.

    When ``query_ids`` / ``doc_ids`` are given, a judgment naming an id outside them is an error:
    a typo in a qrels file would otherwise silently lower every metric.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    known_queries = set(query_ids) if query_ids is not None else None
    known_docs = doc_ids if doc_ids is None or isinstance(doc_ids, (set, dict)) else set(doc_ids)
    qrels: Qrels = {}
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise DataError(
                    path, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})",
                    line_number) from None
            if not line.strip():
                continue
            columns = line.split("\t")
            if line_number == 1 and columns[0].strip().lower() in ("query-id", "query_id", "qid"):
                continue
            if len(columns) == 4:  # TREC qrels: qid, iteration, docid, grade
                columns = [columns[0], columns[2], columns[3]]
            if len(columns) != 3:
                raise DataError(path, f"expected 3 tab-separated columns "
                                      f"(query-id, corpus-id, score), got {len(columns)}",
                                line_number)
            query_id, doc_id, grade_text = (c.strip() for c in columns)
            try:
                grade = int(grade_text)
            except ValueError:
                raise DataError(path, f"score must be an integer, got {grade_text!r}",
                                line_number) from None
            if known_queries is not None and query_id not in known_queries:
                raise DataError(path, f'unknown query id "{query_id}" (not in queries.jsonl)',
                                line_number)
            if known_docs is not None and doc_id not in known_docs:
                raise DataError(path, f'unknown corpus id "{doc_id}" (not in corpus.jsonl)',
                                line_number)
            qrels.setdefault(query_id, {})[doc_id] = grade
    if not qrels:
        raise DataError(path, "empty file: no judgments")
    return qrels


@dataclass(frozen=True)
class BeirDataset:
    """A folder in BEIR layout. Paths are resolved lazily; nothing is read until asked."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))
        if not self.root.is_dir():
            raise DataError(self.root, "dataset folder not found")

    @property
    def corpus_path(self) -> Path:
        return self.root / "corpus.jsonl"

    @property
    def queries_path(self) -> Path:
        return self.root / "queries.jsonl"

    def qrels_path(self, split: str) -> Path:
        """``qrels/<split>.tsv``, or ``qrels.tsv`` for a dataset with a single split."""
        candidate = self.root / "qrels" / f"{split}.tsv"
        if candidate.is_file():
            return candidate
        single = self.root / "qrels.tsv"
        if single.is_file():
            return single
        available = sorted(p.stem for p in (self.root / "qrels").glob("*.tsv"))
        hint = f" (available: {', '.join(available)})" if available else ""
        raise DataError(candidate, f"no qrels for split {split!r}{hint}")

    def corpus(self) -> Iterator[Document]:
        return iter_corpus(self.corpus_path)

    def queries(self) -> dict[str, str]:
        return load_queries(self.queries_path)

    def qrels(self, split: str, query_ids=None, doc_ids=None) -> Qrels:
        return load_qrels(self.qrels_path(split), query_ids, doc_ids)
