"""Random access to the indexed documents (title, text, metadata) without loading them all:
one JSON line per document plus a memory-mapped array of byte offsets."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .datasets import Document

DOCS_FILE = "docs.jsonl"
OFFSETS_FILE = "docs.offsets.npy"


def write_docstore(directory: str | Path, documents: Iterable[Document]) -> Iterator[Document]:
    """Write the store while passing every document through, so a single streaming pass over
    the corpus can feed both the store and an index."""
    directory = Path(directory)
    offsets = []
    with open(directory / DOCS_FILE, "wb") as handle:
        for document in documents:
            offsets.append(handle.tell())
            record = {"id": document.id, "title": document.title, "text": document.text}
            if document.metadata:
                record["metadata"] = document.metadata
            handle.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
            yield document
        offsets.append(handle.tell())
    np.save(directory / OFFSETS_FILE, np.asarray(offsets, dtype=np.int64))


class DocStore:
    """Read documents back by their row in the index."""

    def __init__(self, directory: str | Path):
        directory = Path(directory)
        self.path = directory / DOCS_FILE
        self.offsets = np.load(directory / OFFSETS_FILE, mmap_mode="r")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def get(self, row: int) -> Document:
        start, end = int(self.offsets[row]), int(self.offsets[row + 1])
        with open(self.path, "rb") as handle:
            handle.seek(start)
            record = json.loads(handle.read(end - start))
        return Document(record["id"], record["text"], record.get("title", ""),
                        record.get("metadata", {}))
