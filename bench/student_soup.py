"""Average the weights of students fine-tuned from one start (a "model soup") (issue 19).

Wortsman et al., "Model soups: averaging weights of multiple fine-tuned models improves
accuracy without increasing inference time" (ICML 2022): models trained from the same
initialisation lie in one basin, and their weighted mean often ranks better than either, at
the cost of nothing at serving time. Here the ingredients are the shipped student distilled
from the 12-layer teacher and the same student distilled from itself (the control), both
continued from ``work-out/narrow_stage3/stage3``::

    python bench/student_soup.py \\
        --model work-out/teacher_distill/student-stage3-distilled \\
        --model work-out/self_distill/student-stage3-distilled \\
        --out work-out/soup/student-soup

then exported and measured on the served path as every student is (``lexedge export --int8
--embedder work-out/soup/student-soup …``, ``bench/student_depths.py``). The mean is a plain
tensor-wise average over safetensors (a few lines: no merging library is installed here, and
the models share every name and shape, which the script checks).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from lexedge.runtime.storage import atomic_directory
from lexedge.trainer.stage import copy_model_files, record_model_settings

WEIGHTS = "model.safetensors"


def soup(models: list[Path], weights: list[float], out: Path) -> Path:
    """The weighted mean of ``models``' tensors, written as a model folder ``out`` with the
    first model's config and tokenizer; ``derived_from`` names every ingredient."""
    if len(models) != len(weights) or len(models) < 2:
        raise SystemExit("give two or more --model, and one --weight per model (or none)")
    total = float(sum(weights))
    tensors = [load_file(str(m / WEIGHTS)) for m in models]
    names = set(tensors[0])
    for model, found in zip(models[1:], tensors[1:]):
        if set(found) != names or any(found[n].shape != tensors[0][n].shape for n in names):
            raise SystemExit(f"{model}: its tensors differ from {models[0]}'s in name or shape")
    mean = {n: sum(w / total * t[n].astype(np.float64) for w, t in zip(weights, tensors))
            .astype(tensors[0][n].dtype) for n in tensors[0]}
    with atomic_directory(out, kind="model") as staging:
        save_file(mean, str(staging / WEIGHTS), metadata={"format": "pt"})
        shutil.copyfile(models[0] / "config.json", staging / "config.json")
        copy_model_files([models[0]], staging)
        record_model_settings(staging, {  # the chain goes on through the first ingredient
            "derived_from": {"path": str(models[0]),
                             "soup": [{"path": str(m), "weight": w / total}
                                      for m, w in zip(models, weights)]}})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, action="append", required=True)
    parser.add_argument("--weight", type=float, action="append")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    weights = args.weight or [1.0] * len(args.model)
    print(soup(args.model, weights, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
