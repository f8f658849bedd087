"""Embedding a corpus during an index build, resumably: documents pass through in chunks; a
document unchanged since the index being replaced keeps its vector, and every embedded chunk
is saved beside the index in ``.IDX.embeddings/`` (float32 ``.npy``, read without pickle),
named by the hash of the embedder and the chunk's texts, so a killed build started again
loads those chunks instead of re-embedding them (issue 6). The chunks embed on a helper thread
while the build reads, stores and analyses the documents for BM25 (issue 19)."""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .datasets import Document
from .storage import atomic_file

# Chunks waiting or running on the embedding thread at once: one embeds while the next is
# read and analysed; more would only hold more text.
EMBED_AHEAD = 2


def saved_chunks_folder(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(f".{out.name}.embeddings")


class ChunkStore:
    """Embedded chunks of an unfinished build, so that a killed build resumes (see the module
    docstring). A chunk is found by the hash of the embedder id and its texts, never by
    position, so a changed corpus cannot pick up stale vectors."""

    def __init__(self, folder: Path, embedder_id: str):
        self.folder = folder
        self.embedder_id = embedder_id

    def _path(self, texts: list[str]) -> Path:
        digest = hashlib.sha256(self.embedder_id.encode())
        for text in texts:
            digest.update(b"\0" + text.encode("utf-8"))
        return self.folder / f"{digest.hexdigest()[:40]}.npy"

    def load(self, texts: list[str], dimension: int) -> np.ndarray | None:
        path = self._path(texts)
        if not path.is_file():
            return None
        try:
            block = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None  # a chunk cut short by the kill: embed it again
        return block if block.shape == (len(texts), dimension) else None

    def save(self, texts: list[str], block: np.ndarray) -> None:
        with atomic_file(self._path(texts)) as handle:
            np.save(handle, block, allow_pickle=False)


class BuildProgress:
    """How far an index build's embedding (or another pass over its documents: ``what``) is:
    a tqdm bar on a terminal; elsewhere (a log, CI, a pipe) one line every ``every`` seconds
    and at the end, with the rate and what is left when the total is known (issue 23: a build
    sat silent for 9.5 minutes off a terminal)."""

    def __init__(self, total: int | None, enabled: bool, every: float = 30.0,
                 stream=None, what: str = "embedding"):
        from tqdm import tqdm

        self.stream = sys.stderr if stream is None else stream
        self.total, self.enabled, self.every, self.what = total, enabled, every, what
        terminal = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = tqdm(desc=what, unit=" docs", total=total, mininterval=1.0,
                        disable=not terminal, file=self.stream)
        self.lines = enabled and not terminal
        self.done, self.started = 0, time.monotonic()
        self.last = self.started

    def update(self, count: int) -> None:
        self.done += count
        self.bar.update(count)
        now = time.monotonic()
        if self.lines and now - self.last >= self.every:
            self.last = now
            self._line(now)

    def note(self, **fields) -> None:
        self.bar.set_postfix(refresh=False, **fields)

    def close(self) -> None:
        self.bar.close()
        if self.lines:
            self._line(time.monotonic(), final=True)

    def _line(self, now: float, final: bool = False) -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        of = f" of {self.total:,}" if self.total else ""
        left = ""
        if not final and self.total and rate > 0:
            left = f", about {_duration((self.total - self.done) / rate)} left"
        print(f"lexedge: {self.what} {self.done:,}{of} documents, {rate:.0f} docs/s"
              f"{left}{', done in ' + _duration(elapsed) if final else ''}",
              file=self.stream, flush=True)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


class ChunkEmbedding:
    """Embeds a build's documents as they stream past, a chunk at a time on a helper thread,
    so that the calling thread reads, stores and analyses the next documents for BM25 while
    the embedder works, and the last chunks are still embedding while ``bm25s`` indexes.

    A document unchanged since ``previous`` keeps its vector, one found in ``imported``
    (vectors encoded elsewhere) takes that one; a chunk embedded by an earlier, killed run of
    this build is loaded from ``saved``. At most ``ahead`` chunks wait or run, so the corpus
    text is never all in memory. Progress moves with every batch the embedder runs.

    Use it as a context manager: :meth:`stream` passes the documents through, :meth:`vectors`
    then waits for every chunk and returns the vectors in document order (an error of the
    embedder is raised there, or by :meth:`stream`); leaving the block early cancels the
    chunks not yet started and waits for the one running.
    """

    def __init__(self, embedder, progress: bool, previous, counts: dict, saved: ChunkStore,
                 chunk_size: int, total: int | None = None, imported=None,
                 ahead: int = EMBED_AHEAD):
        self.embedder, self.previous, self.imported = embedder, previous, imported
        self.counts, self.saved, self.chunk_size = counts, saved, chunk_size
        self.ahead = max(1, ahead)
        self.bar = BuildProgress(total, progress)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="lexedge-embedding")
        self._blocks: list[Future] = []

    def __enter__(self) -> "ChunkEmbedding":
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def stream(self, documents: Iterator[Document]) -> Iterator[Document]:
        for chunk in chunks(documents, self.chunk_size):
            if len(self._blocks) >= self.ahead:
                self._blocks[-self.ahead].result()
            self._blocks.append(self._pool.submit(self._embed, chunk))
            yield from chunk

    def vectors(self) -> np.ndarray:
        blocks = [block.result() for block in self._blocks]
        self.bar.close()
        return np.concatenate(blocks) if blocks \
            else np.zeros((0, self.embedder.dimension), dtype=np.float32)

    def _embed(self, chunk: list[Document]) -> np.ndarray:
        embedder, previous, imported, counts = (self.embedder, self.previous, self.imported,
                                                self.counts)
        block = np.zeros((len(chunk), embedder.dimension), dtype=np.float32)
        fresh, taken = [], 0
        for position, document in enumerate(chunk):
            row = previous.unchanged_row(document, compare_metadata=False) \
                if previous is not None else None
            vector = imported.vector(document) if imported is not None and row is None \
                else None
            if vector is not None:
                block[position] = vector
                taken += 1
            elif row is None:
                fresh.append(position)
            else:
                block[position] = previous.dense.vectors([row])[0]
        if fresh:
            texts = [chunk[i].indexed_text for i in fresh]
            embedded = self.saved.load(texts, embedder.dimension)
            if embedded is None:
                embedded = embedder.encode(texts, kind="passage", on_batch=self.bar.update)
                self.saved.save(texts, embedded)
                counts["embedded"] += len(fresh)
            else:
                counts["resumed"] += len(fresh)
                self.bar.update(len(fresh))
            block[fresh] = embedded
            self.bar.note(resumed=counts["resumed"])
        counts["reused"] += len(chunk) - len(fresh) - taken
        if imported is not None:
            counts["imported"] += taken
        self.bar.update(len(chunk) - len(fresh))
        return block


def chunks(documents: Iterator[Document], size: int) -> Iterator[list[Document]]:
    """``documents`` in lists of ``size`` (the last shorter): how a build embeds its stream,
    and how a vector shard must cut it to compute the same vectors."""
    chunk: list[Document] = []
    for document in documents:
        chunk.append(document)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
