"""Passage states stored at index time, so that re-ranking encodes only the query (PreTTR,
MacAvaney et al., 2020, arXiv:2004.14255; issue 19, item 3).

A late-interaction reranker (:class:`~lexedge.runtime.onnx_models.OnnxLateInteraction`)
scores a passage from its token states, which do not depend on the query. ``lexedge index
build --passage-states`` computes every passage's states once, as re-ranking would read them
(the bundle's tokens for the index's language), and keeps them compressed as ColBERTv2 does
(Santhanam et al., 2022, arXiv:2112.01488; :mod:`~lexedge.runtime.residual_codec`): each
token is the id of its nearest centroid (a spherical k-means of sampled states) and its
residual from it, every dimension in ``bits`` bits (buckets cut at the residuals'
quantiles). A search then runs the reranker's graph on
the query alone and MaxSim over the stored states.

Served on the full corpora (``bench/results/passage_states.md``, 2 AVX2 cores): a search
with the top 20 re-ranked, p95 253 → 43 ms on ja_appi and 114 → 27 ms on STARD, MRR@10
within 0.004 and 0.007 of live, at 4 bits a dimension (the default: 194 bytes a token for
the built-in's 384 dimensions). 2 bits (98 bytes, ColBERTv2's default) lost 0.020 and 0.011
against live (``bench/results/stored_states_bits.md``).

Layout, inside an index::

    states/codec.json     bits, tokens read, the reranker that made the states
    states/centroids.npy  float32 [centroids, dim]
    states/buckets.npy    float32 [2, 2^bits]: cut points (the first 2^bits - 1) and values
    states/offsets.npy    int64 [rows + 1]: each row's first token record
    states/digests.npy    uint8 [rows, 16]: blake2b of each row's records
    states/tokens.bin     uint8 [tokens, RECORD]: centroid id (uint16, little-endian), codes
    states/tokens-K.bin   the records of the rows the K-th update added

The segments (``tokens*.bin``) are the bulk, hundreds of MB for a large corpus, and never
change once written: an update hard-links them into the new version of the index (copies
them where the file system has no hard links) and writes its new rows to a segment of their
own. Neither opening an index nor updating it hashes them: each row is checked against its
digest when a search first reads it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from .embedding_chunks import BuildProgress
from .errors import LexedgeError
from .residual_codec import BUCKETS_FILE, CENTROIDS_FILE, DEFAULT_BITS, ResidualCodec

STATES_FOLDER = "states"
CODEC_FILE = "codec.json"
OFFSETS_FILE, DIGESTS_FILE, TOKENS_FILE = "offsets.npy", "digests.npy", "tokens.bin"


def row_checked(name: str) -> bool:
    """Whether ``name`` (a path inside an index) is a states segment, checked row by row
    as a search reads it, never as a whole."""
    folder, _, file = name.rpartition("/")
    return folder == STATES_FOLDER and file.startswith("tokens") and file.endswith(".bin")


def _segment_name(number: int) -> str:
    return TOKENS_FILE if number == 0 else f"tokens-{number}.bin"


#: Sampled articles whose states fit the codec (its 4,096 centroids, ``residual_codec``):
#: the settings measured in ``bench/results/stored_states_c4096.md`` (1,024 centroids on 600
#: articles lost 0.016 MRR@10 more on STARD), each article giving at most
#: ``SAMPLE_TOKENS_PER_DOCUMENT`` random tokens, so that the sample stays within 200 MB (all
#: of ja_appi's made a 2.1 GB build).
SAMPLE_DOCUMENTS = 2000
SAMPLE_TOKENS_PER_DOCUMENT = 64
#: Documents whose states are computed, encoded and written per step of a build (their
#: float32 states: 200 MB at most, read to 256 tokens).
BUILD_CHUNK = 512
DIGEST_BYTES = 16
REBUILD = "rebuild the index with `lexedge index build ... --passage-states`"


def _digest(records: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(records).data,
                           digest_size=DIGEST_BYTES).digest()


class PassageStates:
    """The stored states of an index's rows, read on demand.

    Args:
        folder: the index's ``states`` folder.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.settings = json.loads((self.folder / CODEC_FILE).read_text(encoding="utf-8"))
        self.codec = ResidualCodec.load(self.folder)
        self.offsets = np.load(self.folder / OFFSETS_FILE, allow_pickle=False)
        self.digests = np.load(self.folder / DIGESTS_FILE, allow_pickle=False)
        if not isinstance(self.settings.get("segments"), list):
            raise LexedgeError(f"{self.folder / CODEC_FILE}: lists no segments (written "
                               f"before they were kept in parts); {REBUILD}")
        self.segments = [(name, int(tokens)) for name, tokens in self.settings["segments"]]
        for name, _ in self.segments:  # a name from the file, never a path out of the folder
            if not row_checked(f"{STATES_FOLDER}/{name}"):
                raise LexedgeError(f"{self.folder / CODEC_FILE}: segment {name!r} is not a "
                                   f"states segment of this folder; {REBUILD}")
        # each segment's first token, in the offsets' numbering
        self._starts = np.cumsum([0] + [tokens for _, tokens in self.segments])
        if self._starts[-1] != self.offsets[-1]:
            raise LexedgeError(f"{self.folder / CODEC_FILE}: its segments hold "
                               f"{self._starts[-1]:,} tokens, the offsets "
                               f"{int(self.offsets[-1]):,} (damaged); {REBUILD}")
        self._records: dict[int, np.ndarray] = {}  # segments mapped on first read
        self._checked: set[int] = set()

    @property
    def tokens(self) -> int:
        """The tokens of each passage that were read (re-ranking must read as many)."""
        return int(self.settings["tokens"])

    @property
    def reranker(self) -> str:
        """The id of the reranker that made the states (:attr:`Bundle.reranker_id`)."""
        return self.settings["reranker"]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def _segment(self, number: int) -> np.ndarray:
        if number not in self._records:
            name, tokens = self.segments[number]
            path = self.folder / name
            size = path.stat().st_size
            if size != tokens * self.codec.record_bytes:
                raise LexedgeError(f"{path}: {size:,} bytes, not the "
                                   f"{tokens * self.codec.record_bytes:,} its {tokens:,} "
                                   f"tokens need (damaged); {REBUILD}")
            self._records[number] = np.memmap(path, dtype=np.uint8, mode="r").reshape(
                -1, self.codec.record_bytes) if size else np.zeros(
                (0, self.codec.record_bytes), dtype=np.uint8)
        return self._records[number]

    def get(self, rows: Sequence[int], ids: Sequence[str] | None = None
            ) -> list[np.ndarray]:
        """Each row's states, float32 [tokens, dim], checked against its digest; ``ids``:
        the rows' document ids, which a refusal names.

        Raises:
            LexedgeError: a row's records changed since the index was written.
        """
        read = []
        for number_in_call, row in enumerate(rows):
            first, end = int(self.offsets[row]), int(self.offsets[row + 1])
            # a row lies in one segment: the one holding its first token (an empty row
            # reads nothing from any)
            number = min(int(np.searchsorted(self._starts, first, side="right")) - 1,
                         len(self.segments) - 1)
            start = int(self._starts[number])
            own = self._segment(number)[first - start:end - start]
            if row not in self._checked:
                if _digest(own) != self.digests[row].tobytes():
                    document = f" (document {ids[number_in_call]!r})" if ids else ""
                    raise LexedgeError(f"{self.folder / self.segments[number][0]}: row {row}"
                                       f"{document} does not match its digest (changed or "
                                       f"damaged since the index was written); {REBUILD}")
                self._checked.add(row)
            read.append(own)
        if not read:
            return []
        # decoded together: one pass of each step over every row's tokens
        decoded = self.codec.decode(np.concatenate(read))
        return np.split(decoded, np.cumsum([len(own) for own in read[:-1]]))


class StatesWriter:
    """Append rows' states to a ``states`` folder, in row order, as a new segment;
    :meth:`close` writes the offsets, digests and segment list (the caller's atomic folder
    fsyncs and installs them).

    Args:
        folder: the ``states`` folder being written (created if missing).
        codec: the codec of a new store.
        settings: what ``codec.json`` records of a new store.
        extending: the ``states`` folder of the index being updated: its codec and rows are
            kept, its segments hard-linked (copied where links fail), unread.
    """

    def __init__(self, folder: Path, codec: ResidualCodec | None = None,
                 settings: dict | None = None, extending: Path | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(exist_ok=True)
        if extending is not None:
            for name in (CODEC_FILE, CENTROIDS_FILE, BUCKETS_FILE):
                shutil.copy2(extending / name, self.folder / name)
            self.settings = json.loads((self.folder / CODEC_FILE).read_text(encoding="utf-8"))
            self.segments = [(name, int(tokens)) for name, tokens in self.settings["segments"]]
            for name, _ in self.segments:
                _link_or_copy(extending / name, self.folder / name)
            self.codec = ResidualCodec.load(self.folder)
            self.offsets = list(np.load(extending / OFFSETS_FILE, allow_pickle=False))
            self.digests = list(np.load(extending / DIGESTS_FILE, allow_pickle=False))
        elif codec is not None:
            self.codec, self.offsets, self.digests, self.segments = codec, [0], [], []
            codec.save(self.folder)
            self.settings = dict(settings or {}, bits=codec.bits,
                                 centroids=len(codec.centroids), dimension=codec.dimension,
                                 record_bytes=codec.record_bytes)
        else:
            raise ValueError("StatesWriter: a codec for a new store, or the store it extends")
        self.segment = _segment_name(len(self.segments))
        self._handle = open(self.folder / self.segment, "xb")
        self._written = 0

    def append(self, states: Iterable[np.ndarray]) -> None:
        for one in states:
            records = self.codec.encode(one)
            self._handle.write(records.tobytes())
            self._written += len(records)
            self.offsets.append(self.offsets[-1] + len(records))
            self.digests.append(np.frombuffer(_digest(records), dtype=np.uint8))

    def close(self) -> None:
        self._handle.close()
        if self._written or not self.segments:
            self.segments.append((self.segment, self._written))
        else:  # an update that added no rows adds no segment
            (self.folder / self.segment).unlink()
        (self.folder / CODEC_FILE).write_text(json.dumps(
            dict(self.settings, segments=self.segments), indent=2) + "\n", encoding="utf-8")
        np.save(self.folder / OFFSETS_FILE, np.asarray(self.offsets, dtype=np.int64),
                allow_pickle=False)
        np.save(self.folder / DIGESTS_FILE, np.asarray(self.digests, dtype=np.uint8).reshape(
            -1, DIGEST_BYTES), allow_pickle=False)


def _link_or_copy(source: Path, target: Path) -> None:
    """``source`` at ``target`` too: a hard link (the segment never changes, and a link
    costs nothing), a copy where the file system refuses links."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def encode_states(reranker, texts: Sequence[str], tokens: int, writer: StatesWriter,
                  progress=None) -> None:
    """Compute ``texts``' passage states read to ``tokens`` and append them in order,
    :data:`BUILD_CHUNK` texts at a time (``texts`` may read them only when sliced, as
    :class:`StoredTexts` does)."""
    for start in range(0, len(texts), BUILD_CHUNK):
        chunk = texts[start:start + BUILD_CHUNK]
        writer.append(found for found, _ in reranker.token_states(
            chunk, "passage", passage_max_length=tokens))
        if progress is not None:
            progress(len(chunk))


class StoredTexts(Sequence):
    """The indexed text of each row of a document store, read from disk when asked for, so
    that a build's states pass never holds the corpus in memory."""

    def __init__(self, docs):
        self.docs = docs

    def __len__(self) -> int:
        return len(self.docs)

    def __getitem__(self, row):
        if isinstance(row, slice):
            return [self.docs.get(one).indexed_text for one in range(*row.indices(len(self)))]
        return self.docs.get(int(row)).indexed_text


def sample_states(reranker, texts: Sequence[str], tokens: int,
                  documents: int = SAMPLE_DOCUMENTS,
                  per_document: int = SAMPLE_TOKENS_PER_DOCUMENT, seed: int = 0) -> np.ndarray:
    """The states a codec is fitted on: up to ``per_document`` random tokens of each of
    ``documents`` random texts, read to ``tokens``."""
    rng = np.random.default_rng(seed)
    sampled = np.sort(rng.choice(len(texts), min(len(texts), documents), replace=False))
    sample, filled = None, 0  # filled in place: no second copy of it at any time
    for start in range(0, len(sampled), BUILD_CHUNK):
        for found, _ in reranker.token_states(
                [texts[row] for row in sampled[start:start + BUILD_CHUNK]], "passage",
                passage_max_length=tokens):
            if sample is None:
                sample = np.empty((len(sampled) * per_document, found.shape[1]),
                                  dtype=np.float32)
            keep = min(len(found), per_document)
            sample[filled:filled + keep] = found[np.sort(rng.choice(len(found), keep,
                                                                    replace=False))]
            filled += keep
    return sample[:filled]


def build_states(folder: Path, reranker, texts: Sequence[str], tokens: int, reranker_id: str,
                 bits: int = DEFAULT_BITS, progress: bool = False) -> dict:
    """Write the states of ``texts`` (an index's rows, in order) into ``folder``; returns what
    the index manifest records of them (settings, time, bytes)."""
    started = time.perf_counter()
    sample = sample_states(reranker, texts, tokens)
    codec = ResidualCodec.fit(sample, bits)
    del sample
    fitted = time.perf_counter() - started
    writer = StatesWriter(folder, codec, {"tokens": tokens, "reranker": reranker_id})
    bar = BuildProgress(len(texts), progress, what="storing the passage states of")
    encode_states(reranker, texts, tokens, writer, bar.update)
    bar.close()
    writer.close()
    return {"tokens": tokens, "bits": codec.bits, "centroids": len(codec.centroids),
            "reranker": reranker_id, "fit_seconds": round(fitted, 3),
            "seconds": round(time.perf_counter() - started, 3),
            "bytes": sum(path.stat().st_size for path in folder.iterdir())}
