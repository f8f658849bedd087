"""What only a training run adds to the one provenance vocabulary
(:mod:`lexedge.runtime.provenance`, issue 18 item 3): the data files a stage was trained on,
named as its manifest's ``provenance.inputs`` names them, and the hardware it ran on."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from lexedge.runtime.provenance import file_sha256


def training_inputs(dataset, splits: list[str]) -> dict[str, Path]:
    """``corpus.jsonl``, ``queries.jsonl`` and each named qrels split (``qrels/<split>.tsv``):
    the files a stage is made from, for :func:`lexedge.runtime.provenance.provenance`'s
    ``inputs``."""
    inputs = {"corpus.jsonl": Path(dataset.corpus_path),
              "queries.jsonl": Path(dataset.queries_path)}
    for split in splits:
        path = Path(dataset.qrels_path(split))
        inputs[f"qrels/{path.name}"] = path
    return inputs


def dataset_hashes(dataset, splits: list[str]) -> dict[str, str]:
    """sha256 of each of :func:`training_inputs`, by the same names."""
    return {name: file_sha256(path) for name, path in training_inputs(dataset, splits).items()}


def hardware() -> dict:
    """The machine a stage trained on: not provenance of the weights, but of its wall times."""
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
