"""A persistent search index: a folder holding the BM25 index, the document store and a
``manifest.json`` that records how it was made (analyzer, BM25 parameters, source hash, and
the :mod:`~lexedge.runtime.provenance` every manifest carries), so that queries are analysed
exactly as the documents were.

Layout::

    IDX/manifest.json
    IDX/bm25/             bm25s arrays (no pickle) + doc ids
    IDX/dense/            the bundle's embeddings (when built with a bundle): stored for exact
                          search up to 250,000, an hnswlib graph above (runtime/dense.py)
    IDX/docs.jsonl        one document per line (a row); removed rows stay as tombstones
    IDX/docs.offsets.npy  byte offset of each line
    IDX/deleted.json      rows removed since the build
    IDX/states/           each passage's re-ranking states, when built with
                          ``--passage-states`` (runtime/passage_states.py)

The manifest lists every file's sha256 and hashes itself: a changed or damaged index is refused
by name (issue 20). Every write goes through :mod:`~lexedge.runtime.storage` (writer lock,
fsync, atomic swap). A build with a bundle embeds resumably, beside its BM25 work
(:mod:`~lexedge.runtime.embedding_chunks`).

An index built with a bundle records the bundle's manifest hash: loading it with another bundle
is refused, because its vectors would not be comparable with the new embedder's queries.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .analysis import Analyzer, detect_language, get_analyzer
from .bm25 import BM25Index
from .datasets import Document, as_documents
from .dense import DenseIndex, GraphFormatError, build_dense, fitted, load_dense
from .docstore import DocStore, append_docstore, write_docstore
from .embedding_chunks import ChunkEmbedding, ChunkStore, saved_chunks_folder
from .errors import LexedgeError
from .exact import ExactIndex
from .passage_states import (STATES_FOLDER, PassageStates, StatesWriter, StoredTexts,
                             build_states, encode_states, row_checked)
from .residual_codec import BITS
from .provenance import PROVENANCE, provenance
from .storage import (MANIFEST_HASH_FIELD, MARKER_FILE, atomic_directory, manifest_sha256,
                      manifest_with, read_manifest, settle, sha256_file, writer_lock)

MANIFEST_FILE = "manifest.json"
#: 2: the manifest lists every file's sha256 and hashes itself (issue 20).
FORMAT_VERSION = 2
REBUILD = "rebuild it with `lexedge index build`"
DELETED_FILE = "deleted.json"
EMBED_CHUNK = 1024


def choose_analyzer(source: Path, analyzer: str = "auto") -> Analyzer:
    """``auto`` samples the start of the corpus to pick ``ja``, ``zh`` or ``word``."""
    from .ingest import iter_documents

    if analyzer != "auto":
        return get_analyzer(analyzer)
    sample = (d.indexed_text for d in itertools.islice(iter_documents(source), 2000))
    return get_analyzer(detect_language(sample))


@dataclass
class Index:
    path: Path
    manifest: dict
    bm25: BM25Index
    docs: DocStore
    dense: ExactIndex | DenseIndex | None = None
    deleted: set[int] = field(default_factory=set)
    bundle: object | None = None  # lexedge.runtime.bundle.Bundle when the index has vectors
    identity: tuple | None = None  # of the manifest file this copy was read from
    states: PassageStates | None = None  # stored re-ranking states (--passage-states)

    def __post_init__(self):
        if self.identity is None:
            self.identity = _identity(self.path)

    @property
    def analyzer(self) -> Analyzer:
        return self.bm25.analyzer

    @classmethod
    def build(cls, source: str | Path | Iterable, out: str | Path, analyzer: str = "auto",
              k1: float = 1.2, b: float = 0.75, bundle=None, progress: bool = True,
              vectors=None, providers: tuple[str, ...] | None = None,
              passage_states: int | None = None) -> "Index":
        """Index ``source`` (a BEIR corpus file, or a file or folder of documents, see
        :mod:`~lexedge.runtime.ingest`; or, from Python, an iterable of :class:`Document` or
        of corpus records, dicts with ``id`` and ``text``) into ``out`` atomically: the old
        index, if any, stays usable until the new one is complete.

        Example::

            Index.build([{"id": "a1", "title": "民法 第九十条", "text": "公の秩序…"}], "idx")

        With a ``bundle`` every document is also embedded (passage side) into the dense index
        (exact search, or an HNSW graph above :data:`~lexedge.runtime.dense.EXACT_LIMIT`).
        Rebuilding over an index made with the same bundle re-embeds only documents whose
        title or text changed; the others keep their vectors. ``vectors`` (an
        :class:`~lexedge.runtime.vector_shards.ImportedVectors`) supplies vectors encoded
        elsewhere: a document found there with the same text is not embedded again.
        ``providers``: onnxruntime execution providers for embedding (``("cuda",)``).
        ``passage_states``: also store every passage's re-ranking states, compressed to this
        many bits a dimension (1, 2, 4 or 8; :mod:`~lexedge.runtime.passage_states`), so
        that re-ranking encodes only the query; the bundle's reranker must be late
        interaction.

        Raises:
            LexedgeError: ``out`` exists and is not a lexedge index (nothing is touched), or
                is where the documents are, or ``passage_states`` cannot be stored.
        """
        out = Path(out)
        if passage_states is not None:
            _check_states_request(bundle, passage_states)
        if isinstance(source, (str, os.PathLike)):
            source = Path(source)
            _refuse_source_as_out(source, out)
        else:
            source = as_documents(source)
            if not source:
                raise LexedgeError("documents: none given")
        with writer_lock(out):
            return cls._build_locked(source, out, analyzer, k1, b, bundle, progress, vectors,
                                     providers, passage_states)

    @classmethod
    def _build_locked(cls, source: Path | list[Document], out: Path, analyzer: str, k1: float,
                      b: float, bundle, progress: bool, imported=None,
                      providers: tuple[str, ...] | None = None,
                      passage_states: int | None = None) -> "Index":
        from .ingest import iter_documents

        given = isinstance(source, list)  # documents from Python, not a path
        if given:
            chosen = get_analyzer(analyzer if analyzer != "auto" else detect_language(
                d.indexed_text for d in source[:2000]))
        else:
            chosen = choose_analyzer(source, analyzer)
        started = time.perf_counter()
        previous = _previous_vectors(out, bundle)
        counts = {"embedded": 0, "reused": 0, "resumed": 0}
        if imported is not None:
            counts["imported"] = 0
        saved_chunks = saved_chunks_folder(out)
        with atomic_directory(out, kind="index", legacy=_legacy_index) as staging, \
                contextlib.ExitStack() as stack:
            stream = write_docstore(staging, unique_ids(
                iter(source) if given else iter_documents(source),
                "documents" if given else source))
            if bundle is not None:
                total = len(source) if given else corpus_lines(source) if progress else None
                embedder = bundle.embedder(providers=providers, bulk=True)
                embedding = stack.enter_context(ChunkEmbedding(
                    embedder, progress, previous, counts,
                    ChunkStore(saved_chunks, bundle.embedder_id), EMBED_CHUNK, total=total,
                    imported=imported))
                stream = embedding.stream(stream)
            bm25 = BM25Index.build(stream, chosen, k1=k1, b=b, progress=progress and not bundle)
            (staging / "bm25").mkdir()
            bm25.save(staging / "bm25")
            if bundle is not None:
                (staging / "dense").mkdir()
                build_dense(embedding.vectors()).save(staging / "dense")
            stored = None
            if passage_states is not None:
                stored = build_states(
                    staging / STATES_FOLDER, bundle.reranker(), StoredTexts(DocStore(staging)),
                    bundle.passage_tokens(chosen.name), bundle.reranker_id, passage_states,
                    progress)
            manifest = _manifest(chosen, k1, b, len(bm25), bundle, Path(out),
                                 {"path": None, "sha256": None, "python": len(source)} if given
                                 else {"path": str(source.resolve()),
                                       "sha256": sha256_file(source) if source.is_file()
                                       else None})
            manifest["build_seconds"] = round(time.perf_counter() - started, 3)
            if bundle is not None:
                manifest["vectors"] = counts
            if stored is not None:
                manifest["passage_states"] = stored
            _seal(staging, manifest)
        shutil.rmtree(saved_chunks, ignore_errors=True)
        return cls.load(out, bundle=bundle)

    @classmethod
    def load(cls, path: str | Path, bundle=None) -> "Index":
        """Open an index. An index with vectors needs its bundle: the one given, else the one
        recorded at build time; a bundle whose hash differs from the recorded one is refused.

        Every file is checked against the manifest's sha256 list, and the manifest against its
        own hash. An index replaced while it was being read is read again, so the parts always
        come from one version.
        """
        path = Path(path)
        for _ in range(5):
            settle(path)
            identity = _identity(path)
            try:
                index = cls._read(path, bundle, identity)
            except LexedgeError:
                # a file that changed because the whole index was replaced meanwhile is not
                # damage: read the new version
                if _identity(path) != identity:
                    continue
                raise
            if _identity(path) == identity:
                return index
        raise LexedgeError(f"{path}: replaced faster than it can be read; try again")

    @classmethod
    def _read(cls, path: Path, bundle, identity) -> "Index":
        manifest = read_manifest(path, "index", FORMAT_VERSION,
                                 "build one with `lexedge index build`")
        files = _checked_file_list(path, manifest)
        # The files a search reads are hashed while this thread reads them, on up to
        # VERIFY_THREADS threads (hashlib and file reads leave the GIL): a cold full-STARD
        # search spent 0.2 s hashing 247 MB before it read anything. The files only an update
        # reads (BM25_UPDATE_FILES) are hashed when an update reads them (_rewrite). Nothing
        # read is returned before every hash has matched, and a damaged file is reported as
        # damaged even when reading it failed first.
        groups = _hash_groups({file: expected for file, expected in files.items()
                               if not _lazy(file.relative_to(path).as_posix())},
                              VERIFY_THREADS)
        # every buffer made before any thread starts: the peak memory does not depend on
        # how the threads interleave
        buffers = [bytearray(VERIFY_CHUNK // len(groups)) for _ in groups]
        with ThreadPoolExecutor(len(groups) or 1) as pool:
            verified = [pool.submit(_verify_files, group, buffer)
                        for group, buffer in zip(groups, buffers)]
            try:
                index = cls._read_verified(path, manifest, bundle, identity)
            except Exception:
                for group in verified:
                    group.result()
                raise
            for group in verified:
                group.result()
        return index

    @classmethod
    def _read_verified(cls, path: Path, manifest: dict, bundle, identity) -> "Index":
        dense = bundle_obj = None
        if manifest.get("bundle"):
            bundle_obj = _matching_bundle(path, manifest["bundle"], bundle)
            try:
                dense = load_dense(path / "dense")
            except GraphFormatError as error:
                source = (manifest.get("source") or {}).get("path") or "DOCS"
                raise LexedgeError(f"{error}; rebuild the index: lexedge index build --docs "
                                   f"{source} --bundle {manifest['bundle']['path']} --out "
                                   f"{path}") from None
        deleted_path = path / DELETED_FILE
        deleted = set(_read_json(deleted_path)) if deleted_path.is_file() else set()
        states = PassageStates(path / STATES_FOLDER) if manifest.get("passage_states") \
            else None
        return cls(path, manifest, BM25Index.load(path / "bm25"), DocStore(path), dense,
                   deleted, bundle_obj, identity, states)

    def __len__(self) -> int:
        return len(self.bm25)

    def row_of(self, doc_id: str) -> int:
        if not hasattr(self, "_rows"):
            self._rows = {self.docs.id_of(row): row for row in range(len(self.docs))
                          if row not in self.deleted}
        return self._rows[doc_id]

    def document(self, doc_id: str) -> Document:
        return self.docs.get(self.row_of(doc_id))

    # Each change takes the index's writer lock and applies itself to the index as it is on
    # disk then, not to this (possibly outdated) copy, so concurrent writers never lose one
    # another's changes. Hold :meth:`writing` around a read-decide-change sequence.

    def writing(self):
        """The index's writer lock (re-entrant): ``with index.writing(): ...``."""
        return writer_lock(self.path)

    def current(self) -> "Index":
        """This index as it is on disk now (itself when nothing changed since it was read)."""
        if _identity(self.path) == self.identity:
            return self
        return Index.load(self.path, bundle=self.bundle)

    def add(self, documents: Iterable, progress: bool = False) -> "Index":
        """Add documents, :class:`Document` or corpus records (dicts with ``id`` and
        ``text``); an id already present replaces the old version."""
        documents = list(unique_ids(as_documents(documents), "the documents to add"))
        with self.writing():
            current = self.current()
            replaced = [d.id for d in documents if current._has(d.id)]
            return current._rewrite(remove_ids=replaced, new_documents=documents,
                                    progress=progress)

    def remove(self, doc_ids: Iterable[str]) -> "Index":
        doc_ids = list(doc_ids)
        with self.writing():
            current = self.current()
            missing = [d for d in doc_ids if not current._has(d)]
            if missing:
                raise LexedgeError(f"{self.path}: no document with id {missing[0]!r}")
            return current._rewrite(remove_ids=doc_ids, new_documents=[])

    def unchanged_row(self, document: Document, compare_metadata: bool = True) -> int | None:
        """The row holding ``document`` with the same title, text and (unless told otherwise)
        metadata, if any. Vectors depend on title and text only."""
        try:
            row = self.row_of(document.id)
        except KeyError:
            return None
        old = self.docs.get(row)
        same = (old.title, old.text) == (document.title, document.text) and (
            not compare_metadata or old.metadata == document.metadata)
        return row if same else None

    def _has(self, doc_id: str) -> bool:
        try:
            self.row_of(doc_id)
            return True
        except KeyError:
            return False

    def _rewrite(self, remove_ids: list[str], new_documents: list[Document],
                 progress: bool = False) -> "Index":
        removed_rows = {self.row_of(d) for d in remove_ids}
        if self.states is not None and new_documents and (
                self.bundle.reranker_id != self.states.reranker):
            raise LexedgeError(f"{self.path}: its passage states were made by another "
                               f"reranker than {self.bundle.path}'s; update it with the bundle "
                               "it was built with, or rebuild it")
        # the stored terms were not hashed when the index was opened for searching (the
        # states' segments are not read here: they are linked into the new version, each
        # row still checked by its digest when read)
        _verify_files({self.path / name: self.manifest["files"][name]
                       for name in BM25_UPDATE_FILES if name in self.manifest["files"]})
        with atomic_directory(self.path, kind="index") as staging:
            for name in ("docs.jsonl", "docs.offsets.npy", "docs.ids.json"):
                shutil.copy2(self.path / name, staging / name)
            deleted = self.deleted | removed_rows
            first_new_row = len(self.docs)
            append_docstore(staging, new_documents)
            docs = DocStore(staging)
            if self.dense is not None:
                dense = load_dense(self.path / "dense")
                dense.remove(removed_rows)
                if new_documents:
                    vectors = self.bundle.embedder().encode(
                        [d.indexed_text for d in new_documents], kind="passage",
                        progress=progress)
                    dense.add(vectors, np.arange(first_new_row, first_new_row + len(vectors)))
                dense = fitted(dense)
                (staging / "dense").mkdir()
                dense.save(staging / "dense")
            if self.states is not None:
                # removed rows keep their states (never read), new rows add a segment
                writer = StatesWriter(staging / STATES_FOLDER,
                                      extending=self.path / STATES_FOLDER)
                encode_states(self.bundle.reranker(), [d.indexed_text for d in new_documents],
                              self.states.tokens, writer)
                writer.close()
            # bm25s has no incremental update: rebuilt from the kept rows' stored terms, only
            # the new documents analysed (an index from before terms were kept: all of them)
            if BM25Index.has_terms(self.path / "bm25"):
                gone = set(remove_ids)
                keep = [row for row, doc_id in enumerate(self.bm25.doc_ids)
                        if doc_id not in gone]
                bm25 = self.bm25.changed(self.path / "bm25", keep, new_documents)
            else:
                live = (docs.get(row) for row in range(len(docs)) if row not in deleted)
                bm25 = BM25Index.build(live, self.analyzer, k1=self.bm25.k1, b=self.bm25.b)
            (staging / "bm25").mkdir()
            bm25.save(staging / "bm25")
            (staging / DELETED_FILE).write_text(json.dumps(sorted(deleted)))
            _seal(staging, dict(self.manifest, documents=len(bm25)),
                  linked_from=(self.path, self.manifest["files"]))
        return Index.load(self.path, bundle=self.bundle)


def had_passage_states(path: str | Path) -> bool:
    """Whether the index at ``path`` (if any) holds stored passage states."""
    try:
        manifest = json.loads((Path(path) / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and bool(manifest.get("passage_states"))


def _check_states_request(bundle, bits: int) -> None:
    """Refuse, before any work, passage states that cannot be stored."""
    if bundle is None:
        raise LexedgeError("--passage-states: needs a --bundle whose reranker is late "
                           "interaction")
    if bundle.passage_tokens(None) is None:  # no reranker, or a cross-encoder
        raise LexedgeError(f"--passage-states: {bundle.path}'s reranker is "
                           f"{'absent' if not bundle.has_reranker else 'a cross-encoder'}; "
                           "only a late-interaction reranker's passage states can be stored")
    if bits not in BITS:
        raise LexedgeError(f"--passage-states: {bits} bits; choose one of "
                           f"{', '.join(map(str, BITS))}")


def unique_ids(documents: Iterable[Document], source) -> Iterator[Document]:
    """Pass documents through, refusing a repeated id: two documents under one id would make
    a hit show the other's text, and an update re-add one of them every time (issue 20)."""
    seen: set[str] = set()
    for document in documents:
        if document.id in seen:
            raise LexedgeError(f"{source}: document id {document.id!r} occurs twice; ids must "
                               "be unique")
        seen.add(document.id)
        yield document


def _identity(path: Path) -> tuple | None:
    """What changes whenever the index at ``path`` is replaced: every write renames a new
    folder into place, so its manifest is a new file (inode) with its own hash."""
    try:
        status = (Path(path) / MANIFEST_FILE).stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino, status.st_mtime_ns


def _seal(staging: Path, manifest: dict,
          linked_from: tuple[Path, dict[str, str]] | None = None) -> None:
    """Write ``manifest`` listing every file's sha256, then the hash of the manifest itself.
    ``linked_from``: the index being updated and its file list; a file of ``staging`` that
    is a hard link to the same file there keeps the sha256 recorded for it (the same bytes:
    hashing a large states segment again would cost seconds per update)."""
    manifest = dict(manifest, format=FORMAT_VERSION)
    manifest.pop(MANIFEST_HASH_FIELD, None)
    manifest["files"] = {path.relative_to(staging).as_posix(): _recorded_sha256(
        path, path.relative_to(staging).as_posix(), linked_from)
        for path in sorted(staging.rglob("*"))
        if path.is_file() and path.name not in (MANIFEST_FILE, MARKER_FILE)}
    manifest[MANIFEST_HASH_FIELD] = manifest_sha256(manifest)
    (staging / MANIFEST_FILE).write_text(
        json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _recorded_sha256(path: Path, name: str,
                     linked_from: tuple[Path, dict[str, str]] | None) -> str:
    if linked_from is not None and name in linked_from[1]:
        try:
            if os.path.samefile(path, linked_from[0] / name):
                return linked_from[1][name]
        except OSError:
            pass  # gone from the old version: hash it
    return sha256_file(path)


def _checked_file_list(path: Path, manifest: dict) -> dict[Path, str]:
    """The index's files and their recorded sha256, once the manifest matches its own hash
    and names only files inside the index that exist; refused, naming the file, otherwise
    (an edit, a truncated copy, a damaged disk: it would serve wrong answers)."""
    if manifest.get(MANIFEST_HASH_FIELD) != manifest_sha256(manifest) or not isinstance(manifest.get("files"), dict):
        raise LexedgeError(f"{path / MANIFEST_FILE}: does not match its own sha256 (edited or "
                           f"damaged); {REBUILD}")
    files = {}
    for name, expected in manifest["files"].items():
        file = path / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise LexedgeError(f"{path / MANIFEST_FILE}: file name {name!r} points outside "
                               "the index")
        if not file.is_file():
            raise LexedgeError(f"{file}: missing from the index; {REBUILD}")
        files[file] = expected
    return files


# bytes hashed at a time while the index is read beside (``sha256_file``), shared out among
# the hashing threads; each thread reuses its part for every file, so that what hashing holds
# does not follow the files' sizes
VERIFY_CHUNK = 1 << 24
# threads hashing an index's files as it opens, each taking whole files, the largest first:
# on 2 AVX2 cores, two threads (and the update-only terms left out) opened the full STARD
# index in 0.366 s instead of 0.424, a whole cold search 0.913 s instead of 0.974
# (``bench/index_open.py``)
VERIFY_THREADS = min(4, os.cpu_count() or 1)
#: The files of an index that only an update reads (each document's stored BM25 terms): a
#: search does not hash them, an update does before it reads them.
BM25_UPDATE_FILES = tuple(f"bm25/{name}" for name in BM25Index.UPDATE_FILES)


def _lazy(name: str) -> bool:
    """Whether opening an index leaves file ``name`` unhashed: the files only an update
    reads (it hashes them then), and the passage states' segments, whose rows a search
    checks as it reads them."""
    return name in BM25_UPDATE_FILES or row_checked(name)


def _hash_groups(files: dict[Path, str], threads: int) -> list[dict[Path, str]]:
    """``files`` in at most ``threads`` groups of about equal bytes (largest file first, each
    to the lightest group)."""
    groups: list[dict[Path, str]] = [{} for _ in range(min(threads, len(files)))]
    loads = [0] * len(groups)
    sizes = {file: _size(file) for file in files}
    for file in sorted(files, key=sizes.__getitem__, reverse=True):
        lightest = loads.index(min(loads))
        groups[lightest][file] = files[file]
        loads[lightest] += sizes[file]
    return [group for group in groups if group]  # empty files can leave one empty


def _size(file: Path) -> int:
    """``file``'s size; 0 when it is gone (hashing it then names it)."""
    try:
        return file.stat().st_size
    except OSError:
        return 0


def _verify_files(files: dict[Path, str], buffer: bytearray | None = None) -> None:
    """Refuse, naming it, a file whose content has changed since the index was written
    (hashed through ``buffer``, by default one of ``VERIFY_CHUNK`` bytes)."""
    buffer = buffer if buffer is not None else bytearray(VERIFY_CHUNK)
    for file, expected in files.items():
        try:
            found = sha256_file(file, buffer=buffer)
        except OSError as exc:  # gone or unreadable: an index replaced meanwhile is read again
            raise LexedgeError(f"{file}: unreadable ({exc.strerror or exc}); {REBUILD}") \
                from None
        if found != expected:
            raise LexedgeError(f"{file}: sha256 mismatch (changed or damaged since the index "
                               f"was written); {REBUILD}")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LexedgeError(f"{path}: unreadable ({exc}); {REBUILD}") from None


#: An index written before artefact markers (format 1) is replaceable by a new build.
_legacy_index = manifest_with("format", "analyzer", "bm25")


def _refuse_source_as_out(source: Path, out: Path) -> None:
    """``--docs X --out X``, or an index inside the folder it indexes, would index or replace
    the user's own files."""
    source, target = source.resolve(), out.resolve()
    if source == target or source.is_relative_to(target):
        raise LexedgeError(f"{out}: is the documents' own location ({source}); "
                           "write the index somewhere else")


def _manifest(analyzer: Analyzer, k1: float, b: float, documents: int, bundle, out: Path,
              source: dict) -> dict:
    recorded = None if bundle is None else {"path": bundle.reference, "sha256": bundle.sha256,
                                            "embedder": bundle.embedder_id}
    if recorded is not None and recorded["path"] != "builtin":
        # also where it lies from the index, so that the two can move together (issue 23)
        recorded["relative"] = os.path.relpath(Path(bundle.path).resolve(),
                                               out.resolve()).replace(os.sep, "/")
    return {
        "format": FORMAT_VERSION,
        PROVENANCE: provenance("lexedge index build"),
        "analyzer": analyzer.to_manifest(),
        "bm25": {"k1": k1, "b": b},
        "documents": documents,
        "bundle": recorded,
        "source": source,
    }


def corpus_lines(source: Path) -> int | None:
    """The number of documents in a corpus.jsonl, counted cheaply (its lines) for the build's
    progress; ``None`` for a folder, whose count is known only once every file is read."""
    path = source / "corpus.jsonl" if source.is_dir() else source
    if not path.is_file() or not path.name.endswith((".jsonl", ".jsonl.gz")):
        return None
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as handle:
            return sum(1 for line in handle if line.strip())
    except (OSError, EOFError):  # gzip.BadGzipFile is an OSError
        return None  # the build itself will say what is wrong


def _recorded_bundle(index_path: Path, recorded: dict) -> str | Path:
    """Where the index's bundle is now: where it was recorded, else at the same place
    relative to the index (the two moved together, as ``demo/index`` and ``demo/bundle``)."""
    if recorded["path"] == "builtin" or (Path(recorded["path"]) / MANIFEST_FILE).is_file():
        return recorded["path"]
    if recorded.get("relative"):
        moved = index_path / recorded["relative"]
        if (moved / MANIFEST_FILE).is_file():
            return moved
    raise LexedgeError(f"{index_path}: its bundle is no longer at {recorded['path']} (moved or "
                       "deleted); give its folder with --bundle DIR")


def _matching_bundle(index_path: Path, recorded: dict, bundle):
    from .bundle import Bundle

    if bundle is None:
        bundle = Bundle.load(_recorded_bundle(index_path, recorded))
    elif not isinstance(bundle, Bundle):
        bundle = Bundle.load(bundle)
    # The vectors depend on the embedder only: a bundle that differs in its reranker serves.
    # Indexes built before the embedder id was recorded match on the whole bundle.
    if ("embedder" in recorded and recorded["embedder"] != bundle.embedder_id) or (
            "embedder" not in recorded and recorded["sha256"] != bundle.sha256):
        raise LexedgeError(
            f"{index_path}: built with bundle {recorded['sha256'][:12]} "
            f"({recorded['path']}), whose embedder differs from that of {bundle.path}; "
            "rebuild the index with this bundle or pass the original one")
    return bundle


def _previous_vectors(out: str | Path, bundle) -> "Index | None":
    """The index being replaced, when its vectors can be reused (same bundle)."""
    if bundle is None or not (Path(out) / MANIFEST_FILE).is_file():
        return None
    try:
        previous = Index.load(out, bundle=bundle)
    except LexedgeError:
        return None  # another bundle or an unreadable index: embed everything afresh
    return previous if previous.dense is not None else None
