"""Random access to the indexed documents (title, text, metadata) without loading them all:
one JSON line per document (a *row*), a memory-mapped array of byte offsets, and the ids."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .datasets import Document
from .errors import LexedgeError

DOCS_FILE = "docs.jsonl"
OFFSETS_FILE = "docs.offsets.npy"
IDS_FILE = "docs.ids.json"


def _record(document: Document) -> bytes:
    record = {"id": document.id, "title": document.title, "text": document.text}
    if document.metadata:
        record["metadata"] = document.metadata
    return json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"


def write_docstore(directory: str | Path, documents: Iterable[Document]) -> Iterator[Document]:
    """Write the store while passing every document through, so a single streaming pass over
    the corpus can feed the store and the indexes."""
    directory = Path(directory)
    offsets, ids = [], []
    with open(directory / DOCS_FILE, "wb") as handle:
        for document in documents:
            offsets.append(handle.tell())
            ids.append(document.id)
            handle.write(_record(document))
            yield document
        offsets.append(handle.tell())
    np.save(directory / OFFSETS_FILE, np.asarray(offsets, dtype=np.int64))
    (directory / IDS_FILE).write_text(json.dumps(ids, ensure_ascii=False), encoding="utf-8")


def append_docstore(directory: str | Path, documents: Iterable[Document]) -> None:
    """Append rows to an existing store (used on a staging copy of an index)."""
    directory = Path(directory)
    offsets = list(np.load(directory / OFFSETS_FILE))
    ids = json.loads((directory / IDS_FILE).read_text(encoding="utf-8"))
    with open(directory / DOCS_FILE, "ab") as handle:
        for document in documents:
            handle.write(_record(document))
            ids.append(document.id)
            offsets.append(handle.tell())
    np.save(directory / OFFSETS_FILE, np.asarray(offsets, dtype=np.int64))
    (directory / IDS_FILE).write_text(json.dumps(ids, ensure_ascii=False), encoding="utf-8")


class DocStore:
    """Read documents back by their row.

    The store keeps ``docs.jsonl`` open: when the index is replaced (a rebuild or an update
    renames a new folder into place) this store goes on reading the version it was opened on,
    consistent with its offsets, until its owner reloads (issue 20).
    """

    def __init__(self, directory: str | Path):
        directory = Path(directory)
        self.path = directory / DOCS_FILE
        self.offsets = np.load(directory / OFFSETS_FILE, mmap_mode="r")
        self.ids = json.loads((directory / IDS_FILE).read_text(encoding="utf-8"))
        self._handle = open(self.path, "rb")
        self._seek_lock = threading.Lock()
        if len(self.offsets) != len(self.ids) + 1:
            raise LexedgeError(f"{directory / OFFSETS_FILE}: {len(self.offsets)} offsets for "
                               f"{len(self.ids)} documents; rebuild the index")

    def __len__(self) -> int:
        return len(self.ids)

    def id_of(self, row: int) -> str:
        return self.ids[row]

    def _read(self, offset: int, size: int) -> bytes:
        if hasattr(os, "pread"):  # no shared file position: threads read at once
            return os.pread(self._handle.fileno(), size, offset)
        with self._seek_lock:  # Windows has no pread
            self._handle.seek(offset)
            return self._handle.read(size)

    def get(self, row: int) -> Document:
        start, end = int(self.offsets[row]), int(self.offsets[row + 1])
        record = json.loads(self._read(start, end - start))
        return Document(record["id"], record["text"], record.get("title", ""),
                        record.get("metadata", {}))
