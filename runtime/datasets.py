"""BEIR-layout datasets: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.

Every reader streams: the corpus is read one line at a time, so a 1 GB corpus is never held in
memory as text by this module (callers keep what they need, e.g. token ids). Bad input raises a
:class:`~lexedge.runtime.errors.DataError` whose message names the file and line.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError

# Longest document text (title and text together) read from a corpus (issue 20, finding 9):
# indexing one 50 MB document took 3 GB. The longest statute article in the shared data has
# 30,789 characters (ja_statutes, 無線設備規則 第二十四条; STARD's longest has 3,846), so this
# is over 30 times that. Longer texts should be split into passages before indexing.
MAX_DOCUMENT_CHARS = 1_000_000

# A JSON escape \ud800-\udfff: half of a UTF-16 pair. Lines holding one are checked for a lone
# half, which Python decodes into a string that cannot be written as UTF-8 (finding 8).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


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

    Raises :class:`DataError` for a missing or empty file, a truncated or corrupt gzip file,
    bytes that are not UTF-8, malformed JSON, a lone surrogate escape (``"\\ud800"``), or a line
    holding something other than a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    records = 0
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        for line_number, raw in _numbered_lines(handle, path):
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
            if _SURROGATE_ESCAPE.search(raw):
                _refuse_lone_surrogates(record, path, line_number)
            records += 1
            yield line_number, record
    if records == 0:
        raise DataError(path, "empty file: no records")


def _numbered_lines(handle, path: Path) -> Iterator[tuple[int, bytes]]:
    """``(line_number, bytes)``; a gzip stream that breaks off is a DataError at the line it
    broke in, not an ``EOFError`` traceback."""
    line_number = 0
    try:
        for line_number, raw in enumerate(handle, start=1):
            yield line_number, raw
    except EOFError:
        raise DataError(path, "the gzip data ends early: the file is truncated",
                        line_number + 1) from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(path, f"not a valid gzip file ({exc})", line_number + 1) from None


def _refuse_lone_surrogates(record: dict, path: Path, line_number: int) -> None:
    """Refuse, rather than replace with U+FFFD, a surrogate half that pairs with nothing: it
    means the file was cut or mis-encoded where it was made, and a silent replacement would
    index (or, in an id, name) something other than what the file says."""
    for key, value in record.items():
        try:
            json.dumps({key: value}, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            char = exc.object[exc.start]
            raise DataError(path, f'"{key}" holds a lone surrogate \\u{ord(char):04x} (half of a '
                                  f"UTF-16 pair), which is not a character", line_number) from None


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
    other field is kept as metadata. Duplicate ids, a document longer than
    :data:`MAX_DOCUMENT_CHARS`, and a corpus where no document has any text are errors."""
    path = Path(path)
    seen: set[str] = set()
    any_text = False
    for line_number, record in iter_jsonl(path):
        document = record_document(record, path, line_number)
        if document.id in seen:
            raise DataError(path, f'duplicate id "{document.id}"', line_number)
        seen.add(document.id)
        any_text = any_text or bool(document.text.strip() or document.title.strip())
        yield document
    if not any_text:
        raise DataError(path, "no document has any text")


def record_document(record: dict, where, line_number: int | None = None) -> Document:
    """A corpus record (``id``, ``text``, optional ``title``, any other field as metadata) as a
    :class:`Document`, checked: ``where`` (a file, or ``documents[3]`` for the Python API)
    and the line name what is wrong."""
    if not isinstance(record, dict):
        raise DataError(where, f"expected an object with id and text, got "
                               f"{type(record).__name__}", line_number)
    doc_id = _required_id(record, where, line_number)
    text = _required_text(record, where, line_number)
    title = record.get("title") or ""
    if not isinstance(title, str):
        raise DataError(where, f'"title" must be a string, got {type(title).__name__}',
                        line_number)
    if len(title) + len(text) > MAX_DOCUMENT_CHARS:
        raise DataError(where, f"document of {len(title) + len(text):,} characters, over the "
                               f"{MAX_DOCUMENT_CHARS:,}-character limit for one document: "
                               f"split it into passages", line_number)
    metadata = {k: v for k, v in record.items() if k not in ("id", "_id", "text", "title")}
    return Document(doc_id, text, title, metadata)


def as_documents(items: Iterable) -> list[Document]:
    """Documents given in Python: each a :class:`Document` or a corpus record (a dict with
    ``id`` and ``text``, as a line of ``corpus.jsonl``)."""
    return [item if isinstance(item, Document) else record_document(item, f"documents[{i}]")
            for i, item in enumerate(items)]


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
