"""What made an artefact: input file hashes and library versions, for every stage manifest."""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path

from lexedge.runtime.storage import sha256_file

LIBRARIES = ("lexedge", "torch", "transformers", "peft", "safetensors", "tokenizers", "numpy",
             "bm25s", "accelerate", "bitsandbytes")

_HASH_MEMO: dict[tuple[str, int, int], str] = {}


def file_hash(path: str | Path) -> str:
    """sha256 of a file, memoised on (path, size, mtime): a 25 MB corpus is hashed once."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _HASH_MEMO:
        _HASH_MEMO[key] = sha256_file(path)
    return _HASH_MEMO[key]


def dataset_hashes(dataset, splits: list[str]) -> dict[str, str]:
    """sha256 of ``corpus.jsonl``, ``queries.jsonl`` and each named qrels split."""
    hashes = {"corpus.jsonl": file_hash(dataset.corpus_path),
              "queries.jsonl": file_hash(dataset.queries_path)}
    for split in splits:
        path = dataset.qrels_path(split)
        hashes[f"qrels/{path.name}"] = file_hash(path)
    return hashes


def library_versions() -> dict[str, str | None]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def hardware() -> dict:
    import os

    info = {"machine": platform.machine(), "processor": platform.processor() or None,
            "cpu_count": os.cpu_count()}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["cuda"] = [torch.cuda.get_device_name(i)
                            for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return info
