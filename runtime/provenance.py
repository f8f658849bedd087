"""What made an artefact, in one vocabulary that every lexedge manifest uses (issue 18, item 3).

Every manifest (index, bundle, trainer stage, imported base model) carries one
``"provenance"`` object, made by :func:`provenance`::

    "provenance": {
        "made_by": "lexedge index build",      # the command (or function) that wrote it
        "created": "2025-06-01T09:30:00+00:00", # when, UTC, ISO 8601 to the second
        "lexedge": "0.1.0",                     # lexedge's version
        "python": "3.11.7",
        "libraries": {"numpy": "2.2.6", "torch": null, ...},  # LIBRARIES: version, or null
                                                               # where not installed
        "inputs": {"corpus.jsonl": "<sha256>", ...}  # optional, see below
    }

``libraries`` always names the same packages (:data:`LIBRARIES`), installed or not, so two
manifests compare key for key. ``inputs`` holds the sha256 (:func:`file_sha256`) of the
files an artefact was made from that none of its own fields names: an index names its
documents under ``source`` and its bundle under ``bundle``, a bundle each stage under
``embedder.source`` / ``reranker.source``, so neither writes ``inputs``; a trainer stage's
training data (corpus, queries, qrels) belongs there.

The names this replaces: ``lexedge_version`` (index, bundle), ``created`` at the top level
(bundle, trainer stages), ``export.versions`` (bundle), ``libraries`` (trainer stages),
``made_by`` as an object of versions (base models).
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path

from lexedge import __version__

from .storage import sha256_file

#: The manifest key of the provenance object.
PROVENANCE = "provenance"
#: Its keys; ``inputs`` is optional.
PROVENANCE_KEYS = ("made_by", "created", "lexedge", "python", "libraries", "inputs")
#: Every package whose version shapes a lexedge artefact: the runtime's (tokenising, BM25,
#: the graph, ONNX), the export's and the trainer's. One list, so every manifest names the
#: same ones.
LIBRARIES = ("numpy", "bm25s", "fugashi", "ipadic", "chroma-hnswlib", "hnswlib", "tokenizers",
             "onnxruntime", "onnx", "torch", "transformers", "peft", "safetensors",
             "accelerate", "bitsandbytes")


def provenance(made_by: str, inputs: Mapping[str, str | Path] | None = None) -> dict:
    """The ``"provenance"`` object of a manifest written now by ``made_by``.

    Args:
        made_by: the command or function writing the artefact, e.g. ``lexedge index build``.
        inputs: files it was made from, by the name the manifest gives them; each is hashed
            (:func:`file_sha256`).
    """
    made = {"made_by": made_by,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "lexedge": __version__, "python": platform.python_version(),
            "libraries": library_versions()}
    if inputs:
        made["inputs"] = {name: file_sha256(path) for name, path in inputs.items()}
    return made


def library_versions(packages: Iterable[str] = LIBRARIES) -> dict[str, str | None]:
    """The installed version of each package, ``None`` for one that is not installed."""
    return dict(_versions(tuple(packages)))


@functools.lru_cache(maxsize=None)
def _versions(packages: tuple[str, ...]) -> tuple[tuple[str, str | None], ...]:
    # A process does not change its libraries; reading metadata is slow (~ms a package).
    return tuple((name, _version(name)) for name in packages)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


_HASH_MEMO: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, memoised on (path, size, mtime): a 25 MB corpus is hashed once per
    process however many manifests name it. For provenance only: an integrity check hashes
    afresh (:func:`lexedge.runtime.storage.sha256_file`)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _HASH_MEMO:
        _HASH_MEMO[key] = sha256_file(path)
    return _HASH_MEMO[key]
