"""Vectors encoded apart (issue 21): the documents of a corpus split into ``N`` shards, each
encoded by its own process or machine (``lexedge index encode --shard I/N``, on whatever
onnxruntime provider that machine has), then imported by one ``lexedge index build
--vectors DIR...``, which gives the index a single build gives.

A shard folder::

    vectors.npy     float32 [documents, dimension] (numpy's format; no pickle)
    ids.jsonl       per row: {"id": …, "sha256": sha256 of the text that was embedded}
    manifest.json   format, shard, shards, documents, dimension, the bundle's embedder id,
                    the source and its sha256, provenance, seconds

The build embeds its document stream in chunks of ``EMBED_CHUNK`` documents (length-sorted
and batched inside each chunk), and an INT8 model's vectors depend a little on the batch a
text shares (dynamic quantisation scales activations per batch: up to 0.006 apart with the
built-in bundle). So a shard takes whole chunks — shard ``I`` of ``N`` embeds chunks ``c``
with ``c % N == I`` of the same stream (a repeated id refused the same way) — and every
vector is the one a single build computes. A build takes a document's vector from a shard
only when the bundle's embedder id, the chunk size and the text's sha256 match; any other
document (changed since, or in a shard not given) is embedded by the build itself.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from .datasets import Document
from .embedding_chunks import BuildProgress, chunks
from .errors import LexedgeError
from . import index
from .index import corpus_lines, unique_ids
from .provenance import PROVENANCE, provenance
from .storage import atomic_directory, sha256_file, write_json_atomic

SHARD_FORMAT = "lexedge-vectors/1"
VECTORS, IDS, MANIFEST = "vectors.npy", "ids.jsonl", "manifest.json"


def text_sha256(document: Document) -> str:
    return hashlib.sha256(document.indexed_text.encode("utf-8")).hexdigest()


def encode_shard(source: Path, bundle, out: Path, shard: int, shards: int, *,
                 providers: tuple[str, ...] | None = None, progress: bool = True) -> dict:
    """Embed shard ``shard`` of ``shards`` of ``source``'s documents into the folder ``out``
    (written under a temporary name and renamed); return its manifest."""
    from .ingest import iter_documents

    source, started = Path(source), time.perf_counter()
    embedder = bundle.embedder(providers=providers, bulk=True)
    size, total = index.EMBED_CHUNK, corpus_lines(source)
    bar = BuildProgress(None if total is None else _share(total, size, shard, shards), progress)
    with atomic_directory(out, kind="vector shard") as staging:
        blocks, count = [], 0
        with (staging / IDS).open("w", encoding="utf-8") as ids:
            stream = chunks(unique_ids(iter_documents(source), source), size)
            for chunk in (c for number, c in enumerate(stream) if number % shards == shard):
                blocks.append(embedder.encode([d.indexed_text for d in chunk], kind="passage",
                                              on_batch=bar.update))
                for document in chunk:
                    ids.write(json.dumps({"id": document.id, "sha256": text_sha256(document)},
                                         ensure_ascii=False) + "\n")
                count += len(chunk)
        bar.close()
        matrix = np.concatenate(blocks) if blocks else np.zeros((0, embedder.dimension),
                                                                 dtype=np.float32)
        np.save(staging / VECTORS, matrix.astype(np.float32), allow_pickle=False)
        manifest = {"format": SHARD_FORMAT, "shard": shard, "shards": shards,
                    "chunk": size, "documents": count, "dimension": int(embedder.dimension),
                    "embedder_id": bundle.embedder_id, "bundle": bundle.reference,
                    "providers": list(embedder.active_providers()),
                    "source": {"name": source.name,
                               "sha256": sha256_file(source) if source.is_file() else None},
                    PROVENANCE: provenance("lexedge index encode"),
                    "seconds": round(time.perf_counter() - started, 3)}
        write_json_atomic(staging / MANIFEST, manifest)
    return manifest


def _share(total: int, size: int, shard: int, shards: int) -> int:
    """How many of ``total`` documents fall in this shard's chunks."""
    return sum(min(size, total - start) for number, start in enumerate(range(0, total, size))
               if number % shards == shard)


class ImportedVectors:
    """The vectors of shard folders, looked up by document (id and text) during a build.

    Raises:
        LexedgeError: a folder is not a shard, was encoded with another embedder, or the
            shards disagree on how many there are or repeat one.
    """

    def __init__(self, folders: list[Path], bundle):
        self.rows: dict[str, tuple[str, np.ndarray, int]] = {}
        self.shards: set[int] = set()
        self.of: int | None = None
        for folder in map(Path, folders):
            manifest = _read_manifest(folder)
            if manifest["embedder_id"] != bundle.embedder_id:
                raise LexedgeError(f"{folder}: encoded with another embedder than "
                                   f"{bundle.path}'s; encode it again with this bundle")
            if manifest.get("chunk") != index.EMBED_CHUNK:
                raise LexedgeError(f"{folder}: encoded in chunks of {manifest.get('chunk')} "
                                   f"documents, this build embeds {index.EMBED_CHUNK} at a time "
                                   "(another lexedge version); encode it again")
            if self.of not in (None, manifest["shards"]) or manifest["shard"] in self.shards:
                raise LexedgeError(f"{folder}: shard {manifest['shard']}/{manifest['shards']} "
                                   "repeats one or belongs to another split of the corpus")
            self.of = manifest["shards"]
            self.shards.add(manifest["shard"])
            vectors = np.load(folder / VECTORS, mmap_mode="r", allow_pickle=False)
            with (folder / IDS).open(encoding="utf-8") as handle:
                for row, line in enumerate(handle):
                    record = json.loads(line)
                    self.rows[record["id"]] = (record["sha256"], vectors, row)
            if vectors.shape != (manifest["documents"], manifest["dimension"]) or \
                    len(self.rows) < manifest["documents"]:
                raise LexedgeError(f"{folder}: {VECTORS} and {IDS} do not match its manifest; "
                                   "encode the shard again")

    def vector(self, document: Document) -> np.ndarray | None:
        found = self.rows.get(document.id)
        if found is None or found[0] != text_sha256(document):
            return None
        return np.asarray(found[1][found[2]], dtype=np.float32)


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LexedgeError(f"{folder}: not a vector shard (no {MANIFEST}); make one with "
                           "`lexedge index encode`") from None
    except json.JSONDecodeError as exc:
        raise LexedgeError(f"{path}: malformed JSON ({exc.msg})") from None
    if manifest.get("format") != SHARD_FORMAT:
        raise LexedgeError(f"{path}: not a vector shard (format {manifest.get('format')!r})")
    return manifest
