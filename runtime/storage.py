"""Safe writes of lexedge's artefacts (indexes, bundles, checkpoints): a writer lock per
destination, a refusal to replace what lexedge did not make, and atomic, durable swaps.

A folder artefact ``DEST`` is written by :func:`atomic_directory` in this order (issue 20):

1. take the writer lock ``.DEST.lock`` beside it (``filelock``; the holder's host and pid are
   written to ``.DEST.lock.owner`` so a waiting writer can say who it waits for);
2. finish or roll back a swap an earlier writer left half done (see :func:`recover`);
3. refuse ``DEST`` if it exists and is neither empty nor an artefact of the same kind;
4. build the new version in ``.DEST.tmp-PID-TOKEN``; on failure remove it, ``DEST`` untouched;
5. fsync every file and folder in it, then rename it to ``.DEST.ready-PID-TOKEN``: from here on
   the new version is complete and any later command installs it;
6. rename ``DEST`` to ``.DEST.old-PID-TOKEN``, ``ready`` to ``DEST``, fsync the parent folder,
   remove ``old``.

A kill at any point leaves either the old or the new version installable, and the next
command that touches ``DEST`` (a reader too) completes the swap. Readers never take the lock
except to do that: they keep their open files, which survive the renames.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from .errors import LexedgeError

#: What every folder artefact carries, so a later writer knows lexedge made it.
MARKER_FILE = ".lexedge-artefact.json"
#: Seconds a writer waits for another writer of the same destination before giving up.
LOCK_TIMEOUT = float(os.environ.get("LEXEDGE_LOCK_TIMEOUT", "600"))
#: Durability switches, on in every real run; ``bench/lock_fsync_cost.py`` turns them off to
#: measure what they cost.
FSYNC = True
LOCKING = True

_LEFTOVER_KINDS = ("tmp", "ready", "old")


def _sibling(destination: Path, suffix: str) -> Path:
    return destination.with_name(f".{destination.name}.{suffix}")


# -- the writer lock ---------------------------------------------------------------------------

@contextmanager
def writer_lock(destination: str | Path, timeout: float | None = None) -> Iterator[None]:
    """Hold the writer lock of ``destination`` (re-entrant within a thread).

    Another process or thread that holds it makes this one wait up to ``timeout`` seconds
    (default :data:`LOCK_TIMEOUT`), then fail with one line naming the holder.
    """
    if not LOCKING:
        yield
        return
    from filelock import FileLock, Timeout

    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    lock_path = _sibling(destination, "lock")
    lock = FileLock(lock_path, is_singleton=True)
    owner = _sibling(destination, "lock.owner")
    timeout = LOCK_TIMEOUT if timeout is None else timeout
    outermost = not lock.is_locked
    try:
        lock.acquire(timeout=min(timeout, 1.0))
    except Timeout:
        print(f"lexedge: waiting for {destination}: {_holder(owner)} is writing it",
              file=sys.stderr, flush=True)
        try:
            lock.acquire(timeout=max(0.0, timeout - 1.0))
        except Timeout:
            raise LexedgeError(f"{destination}: another writer ({_holder(owner)}) still holds "
                               f"its lock after {timeout:g} s; try again when it has finished"
                               ) from None
    try:
        if outermost:
            owner.write_text(json.dumps({"host": platform.node(), "pid": os.getpid(),
                                         "since": time.strftime("%Y-%m-%dT%H:%M:%S")}))
        yield
    finally:
        if outermost:
            owner.unlink(missing_ok=True)
            # Leave nothing behind: unlinked while still held, the lock file is gone for good;
            # a writer waiting on the old file finds it unlinked once it gets it and takes a
            # fresh one (filelock checks st_nlink after flock).
            with suppress(OSError):
                lock_path.unlink()
        lock.release()


def _holder(owner: Path) -> str:
    try:
        facts = json.loads(owner.read_text())
        return f"host {facts['host']}, pid {facts['pid']}, since {facts['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


# -- atomic, durable folder swaps --------------------------------------------------------------

@contextmanager
def atomic_directory(destination: str | Path, kind: str = "artefact",
                     legacy: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield a fresh staging folder; on success it replaces ``destination`` (see the module
    docstring for the protocol). On failure ``destination`` is left as it was.

    Args:
        kind: what the artefact is (``"index"``, ``"bundle"``, ``"checkpoint"`` …); recorded
            in its :data:`MARKER_FILE`, and an existing ``destination`` is replaced only if it
            is empty or carries a marker of the same kind.
        legacy: recognises an artefact of this kind written before markers existed.

    Raises:
        LexedgeError: ``destination`` is something else (a user's folder or file), or its
            lock is held too long by another writer.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with writer_lock(destination):
        recover(destination)
        refuse_foreign(destination, kind, legacy)
        token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        staging = _sibling(destination, f"tmp-{token}")
        staging.mkdir()
        try:
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        (staging / MARKER_FILE).write_text(json.dumps({"kind": kind}) + "\n")
        fsync_tree(staging)
        ready = _sibling(destination, f"ready-{token}")
        os.replace(staging, ready)
        fsync_directory(destination.parent)
        _install(destination, ready)


def refuse_foreign(destination: Path, kind: str,
                   legacy: Callable[[Path], bool] | None = None) -> None:
    """Raise unless ``destination`` is absent, an empty folder, or a lexedge ``kind``."""
    if not destination.exists() and not destination.is_symlink():
        return
    if destination.is_dir() and not destination.is_symlink():
        if not any(destination.iterdir()) or artefact_kind(destination) == kind or (
                legacy is not None and legacy(destination)):
            return
        made = artefact_kind(destination)
        what = f"a lexedge {made}, not a {kind}" if made else f"not a lexedge {kind}"
    else:
        what = "a file" if destination.is_file() else "not a folder"
    raise LexedgeError(f"{destination}: exists and is {what}; lexedge replaces only its own "
                       f"{kind} folders: choose another path or move it away yourself")


def manifest_with(*keys: str) -> Callable[[Path], bool]:
    """A ``legacy`` test for :func:`atomic_directory`: the folder's ``manifest.json`` is a
    JSON object holding ``keys`` (an index or bundle written before artefact markers)."""
    def recognised(folder: Path) -> bool:
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(manifest, dict) and set(keys) <= manifest.keys()
    return recognised


def artefact_kind(folder: Path) -> str | None:
    """The kind recorded in ``folder``'s marker, or ``None``."""
    try:
        return json.loads((folder / MARKER_FILE).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def _install(destination: Path, ready: Path) -> None:
    """Steps 6 of the protocol: swap ``ready`` in, retire whatever was there."""
    retired = ready.with_name(ready.name.replace(".ready-", ".old-", 1))
    if destination.exists():
        os.replace(destination, retired)
    os.replace(ready, destination)
    fsync_directory(destination.parent)
    shutil.rmtree(retired, ignore_errors=True)


def leftovers(destination: Path) -> dict[str, list[Path]]:
    """The staging, ready and retired folders earlier writers of ``destination`` left."""
    found: dict[str, list[Path]] = {kind: [] for kind in _LEFTOVER_KINDS}
    prefix = f".{destination.name}."
    try:
        entries = list(destination.parent.iterdir())
    except OSError:
        return found
    for entry in entries:
        if entry.name.startswith(prefix):
            kind = entry.name[len(prefix):].split("-", 1)[0]
            if kind in found and "-" in entry.name[len(prefix):]:
                found[kind].append(entry)
    return found


def recover(destination: Path) -> None:
    """Complete or roll back what killed writers of ``destination`` left (call under its
    lock): a ready version is installed (it was complete and meant to replace
    ``destination``); failing that a missing ``destination`` gets its retired version back;
    unfinished staging folders are removed."""
    found = leftovers(destination)
    if found["ready"]:
        newest = max(found["ready"], key=lambda p: p.stat().st_mtime_ns)
        _install(destination, newest)
        found["ready"].remove(newest)
    elif found["old"] and not destination.exists():
        newest = max(found["old"], key=lambda p: p.stat().st_mtime_ns)
        os.replace(newest, destination)
        fsync_directory(destination.parent)
        found["old"].remove(newest)
    for folder in (p for paths in found.values() for p in paths):
        shutil.rmtree(folder, ignore_errors=True)


def settle(destination: str | Path) -> None:
    """For readers: if a writer of ``destination`` left a swap half done, wait for its lock
    and complete the swap. Costs one directory listing when there is nothing to do."""
    destination = Path(destination)
    found = leftovers(destination)
    if not (found["ready"] or (found["old"] and not destination.exists())):
        return
    try:
        with writer_lock(destination):
            recover(destination)
    except OSError:
        pass  # a read-only location: serve what is installed


def fsync_tree(folder: Path) -> None:
    """fsync every file and folder under ``folder`` (and ``folder`` itself)."""
    if not FSYNC:
        return
    for root, _, names in os.walk(folder):
        for name in names:
            descriptor = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        fsync_directory(Path(root))


def fsync_directory(folder: Path) -> None:
    """Make renames in ``folder`` durable (a no-op where folders cannot be opened)."""
    if not FSYNC:
        return
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems refuse fsync on folders
    finally:
        os.close(descriptor)


# -- single files ------------------------------------------------------------------------------

@contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """Yield a binary handle on a temporary file beside ``path``; on success it is fsynced and
    renamed to ``path``, on failure removed (``path`` is left as it was)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with staging.open("wb") as handle:
            yield handle
            handle.flush()
            if FSYNC:
                os.fsync(handle.fileno())
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    os.replace(staging, path)
    fsync_directory(path.parent)


def write_json_atomic(path: str | Path, payload) -> None:
    """Write JSON to ``path`` through a temporary file and a rename."""
    with atomic_file(path) as handle:
        handle.write((json.dumps(payload, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))


# -- hashes and manifests ----------------------------------------------------------------------

def sha256_file(path: str | Path, chunk_size: int = 1 << 20,
                buffer: bytearray | None = None) -> str:
    """The sha256 of a file's bytes, read in chunks into one buffer: ``buffer`` when given
    (reused over many files), else one of ``chunk_size`` at most. Reading and hashing leave
    the GIL; each chunk takes it back, which waits for whatever Python code runs beside, so a
    hash run beside other work (an index hashed while it is read) takes a large buffer: 16 MB
    take the GIL back a few dozen times for a full STARD index, not hundreds."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        view = memoryview(buffer if buffer is not None else bytearray(
            max(1, min(chunk_size, os.fstat(handle.fileno()).st_size))))  # small files
        while read := handle.readinto(view):
            digest.update(view[:read])
    return digest.hexdigest()


#: The field of an index's or bundle's manifest that holds the hash of the rest of it.
MANIFEST_HASH_FIELD = "manifest_sha256"


def manifest_sha256(manifest: dict) -> str:
    """The sha256 of ``manifest``'s canonical JSON (sorted keys, no spaces, UTF-8) without its
    own :data:`MANIFEST_HASH_FIELD`: what that field must hold.

    It detects damage and hand edits; anyone can recompute it, so it is no signature.
    """
    rest = {key: value for key, value in manifest.items() if key != MANIFEST_HASH_FIELD}
    canonical = json.dumps(rest, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def read_manifest(folder: str | Path, kind: str, expected_format: int, remedy: str) -> dict:
    """Read ``folder/manifest.json`` of an index or bundle, refusing with one line naming the
    file when it is missing, malformed or of another format version.

    Args:
        kind: what the folder should be (``"index"``, ``"bundle"``), for the messages.
        remedy: what the user should run, e.g. ``"build one with `lexedge index build`"``.
    """
    folder = Path(folder)
    path = folder / "manifest.json"
    if not path.is_file():
        raise LexedgeError(f"{folder}: not a lexedge {kind} (no manifest.json); {remedy}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LexedgeError(f"{path}: malformed JSON ({exc})") from None
    found = manifest.get("format") if isinstance(manifest, dict) else None
    if found != expected_format:
        raise LexedgeError(f"{path}: {kind} format {found!r} is not supported "
                           f"(expected {expected_format}); {remedy}")
    return manifest
