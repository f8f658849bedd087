"""Open an article's source file with the desktop's own program, locally only.

A ``source`` that names a URL or a network share is refused: lexedge never reaches the
network, and a corpus file must not be able to make it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from lexedge.runtime.errors import LexedgeError

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # scheme: (a drive letter C: is one letter)


def source_path(metadata: dict, manifest: dict) -> Path:
    """The local file named by ``metadata["source"]``; a relative name is taken from the
    folder the index was built from, or from the folder of the corpus file it was built from
    (issue 23: a folder's own files were looked for in its parent).

    Raises:
        LexedgeError: no source, a URL or network path, or a file that is not there.
    """
    source = str(metadata.get("source") or "").strip()
    if not source:
        raise LexedgeError("this article has no source file")
    if _URL.match(source) or source.startswith(("//", "\\\\")):
        raise LexedgeError(f"{source}: not a local file; lexedge opens local files only")
    path = Path(source).expanduser()
    if not path.is_absolute():
        corpus = (manifest.get("source") or {}).get("path")
        base = Path.cwd() if not corpus else Path(corpus) if Path(corpus).is_dir() \
            else Path(corpus).parent
        path = base / path
    if not path.is_file():
        raise LexedgeError(f"{path}: source file not found")
    return path.resolve()


def open_local_file(path: Path) -> None:
    """Hand ``path`` to the platform's opener without waiting for it."""
    if sys.platform == "win32":
        os.startfile(str(path))  # noqa: S606 (a local file, checked by source_path)
        return
    program = "open" if sys.platform == "darwin" else "xdg-open"
    if shutil.which(program) is None:
        raise LexedgeError(f"no {program} on this system to open {path}")
    subprocess.Popen([program, str(path)], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)
