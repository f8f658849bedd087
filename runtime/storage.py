"""Atomic writes: an index, a bundle or a checkpoint is built under a temporary name beside its
destination and renamed into place, so a crash never leaves a half-written artefact."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from typing import BinaryIO
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_directory(destination: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary folder; on success it replaces ``destination`` in one rename.

    On failure the temporary folder is removed and ``destination`` is left as it was.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_staging(destination)
    staging = destination.with_name(f".{destination.name}.tmp-{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    retired = destination.with_name(f".{destination.name}.old-{os.getpid()}")
    if destination.exists():
        os.replace(destination, retired)
    os.replace(staging, destination)
    if retired.exists():
        shutil.rmtree(retired, ignore_errors=True)


def _remove_abandoned_staging(destination: Path) -> None:
    """Clean up after earlier writers of ``destination`` that were killed (SIGKILL, power loss)
    before they could: an unfinished temporary folder is removed; a writer killed between its
    two renames is completed (its temporary folder was whole). A live writer is left alone."""
    pids = {leftover.name.rsplit("-", 1)[-1]
            for pattern in (f".{destination.name}.tmp-*", f".{destination.name}.old-*")
            for leftover in destination.parent.glob(pattern)}
    for pid in sorted(p for p in pids if p.isdigit()):
        if int(pid) == os.getpid() or _running(int(pid)):
            continue
        staging = destination.with_name(f".{destination.name}.tmp-{pid}")
        retired = destination.with_name(f".{destination.name}.old-{pid}")
        if not destination.exists():
            if retired.exists() and staging.exists():
                os.replace(staging, destination)
            elif retired.exists():
                os.replace(retired, destination)
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)


def _running(pid: int) -> bool:
    """Whether process ``pid`` is alive; a killed process its parent has not yet reaped (a
    zombie, state ``Z`` in ``/proc``) is not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): the signal test is all there is
    return state != "Z"


@contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """Yield a binary handle on a temporary file beside ``path``; on success it is renamed to
    ``path``, on failure removed (``path`` is left as it was)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with staging.open("wb") as handle:
            yield handle
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    os.replace(staging, path)


def write_json_atomic(path: str | Path, payload) -> None:
    """Write JSON to ``path`` through a temporary file and a rename."""
    with atomic_file(path) as handle:
        handle.write((json.dumps(payload, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(folder: str | Path, kind: str, expected_format: int, remedy: str) -> dict:
    """Read ``folder/manifest.json`` of an index or bundle, refusing with one line naming the
    file when it is missing, malformed or of another format version.

    Args:
        kind: what the folder should be (``"index"``, ``"bundle"``), for the messages.
        remedy: what the user should run, e.g. ``"build one with `lexedge index build`"``.
    """
    from .errors import LexedgeError

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
