"""The depth table (issue 19, item 2): for each student depth, quality on the full-corpus dev
sets (any ``bench/results/student_depths_*.json`` row with that bundle name, written by
``bench/student_depths.py``; the zero-shot e5-small row under the name ``e5``) beside the
passage-encoding speed of every depth and of the zero-shot e5-small INT8 bundle, measured side
by side in this one run on the same STARD articles. Speed does not depend on the weights, so a
depth whose student was not evaluated can still be timed from an untrained cut
(``make_student``) exported the same way.

    python bench/student_depth_table.py --baseline work-out/e5-int8 \\
        --bundle L2=work-out/cut/L2 --bundle L3=work-out/builtin/L3 \\
        --bundle L4=work-out/cut/L4 --bundle L6=work-out/cut/L6 --alpha 0.5

Writes ``bench/results/student_depth_table.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from builtin_speed import throughput
from compute_bound import _cpu_flags
from lock_fsync_cost import cpu_model
from report import write_report

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
BASELINE = "e5-small INT8 (12 layers, zero-shot)"


def _manifest(folder) -> dict:
    return json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8"))


def layer_count(folder) -> int | None:
    return _manifest(folder)["embedder"].get("layers")


def onnx_mb(folder) -> float:
    return round((Path(folder) / _manifest(folder)["embedder"]["file"]).stat().st_size / 1e6, 1)


def _metric(row: dict, key: str, metric: str) -> str:
    return f"{row[key][metric]:.4f}" if row[key] else "-"


def quality_rows(results: Path) -> dict:
    """Bundle name -> dataset -> its row, from every ``student_depths_*.json``; each row keeps
    the CPU of the run that measured it (its build seconds are that machine's)."""
    found: dict = {}
    for path in sorted(results.glob("student_depths_*.json")):
        measured = json.loads(path.read_text(encoding="utf-8"))
        for row in measured["rows"]:
            found.setdefault(row["bundle"], {})[row["dataset"]] = {
                **row, "cpu": f"{measured['cpu']} ({measured['flags']})"}
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--bundle", action="append", required=True, metavar="NAME=DIR")
    parser.add_argument("--alpha", default="0.5", help="the hybrid row shown")
    parser.add_argument("--baseline-name", default="e5",
                        help="the baseline's bundle name in student_depths_*.json")
    parser.add_argument("--articles", type=int, default=400)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--name", default="student_depth_table")
    parser.add_argument("--note", default="", help="a paragraph under the table (what the "
                        "bundle names mean)")
    args = parser.parse_args(argv)
    from lexedge.runtime.datasets import BeirDataset

    bundles = dict(spec.split("=", 1) for spec in args.bundle)
    documents = [doc.indexed_text for doc in BeirDataset(args.data / "stard").corpus()]
    rng = np.random.default_rng(13)
    sample = [documents[i] for i in sorted(rng.choice(len(documents), args.articles,
                                                      replace=False))]
    speed = throughput({BASELINE: args.baseline, **bundles}, sample)
    measured = quality_rows(args.results)
    rows = []
    for name, label in [(name, name) for name in bundles] + [(args.baseline_name, BASELINE)]:
        found = measured.get(name, {})
        stard, appi = found.get("stard"), found.get("ja_appi")
        if stard is None and label == BASELINE:
            continue
        # a depth with no quality row (its student was not evaluated) still gets its speed
        rows.append({"bundle": "e5-small (teacher, zero-shot)" if label == BASELINE else name,
                     "layers": (stard or {}).get("layers") or (12 if label == BASELINE
                                                               else layer_count(bundles[name])),
                     "onnx_mb": onnx_mb(args.baseline if label == BASELINE else bundles[name]),
                     "articles_per_s": speed[label],
                     "speedup": round(speed[label] / speed[BASELINE], 2),
                     "stard_build_seconds": stard and stard["build_seconds"],
                     "cpu": stard and stard["cpu"],
                     "stard_dense": stard and stard["dense"],
                     "stard_hybrid": stard and stard["hybrid"][args.alpha],
                     "ja_appi_hybrid": appi["hybrid"][args.alpha] if appi else None})
    results = {"cpu": cpu_model(), "flags": _cpu_flags(), "cores": os.cpu_count(),
               "articles": args.articles, "baseline_articles_per_s": speed[BASELINE],
               "alpha": args.alpha, "rows": rows}
    lines = [
        "# Student depth: quality on full-corpus dev against speed", "",
        f"CPU: {results['cpu']} ({results['flags']}), {results['cores']} cores. Speed: "
        f"{args.articles} STARD articles encoded by every bundle in this one run, each in a "
        f"process of its own, rounds alternating (median of 3); {BASELINE}: "
        f"{speed[BASELINE]} articles/s. Quality: the "
        "served INT8 path over the **full** corpora (STARD 58,513 articles, 124 dev "
        f"questions; ja_appi 12,116 articles, 80 dev clauses), hybrid at alpha {args.alpha} "
        "(bench/results/student_depths_<depth>.md have every alpha and the dense rows).", "",
        "| bundle | layers | embedder.onnx MB | articles/s | vs e5-small | STARD full build s "
        "| STARD dense R@100 | STARD hybrid R@100 | MRR@10 | nDCG@10 | ja_appi hybrid R@10 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *[f"| {r['bundle']} | {r['layers']} | {r['onnx_mb']} | {r['articles_per_s']} | "
          f"{r['speedup']:.2f}x | "
          + (f"{r['stard_build_seconds']:.0f}" if r["stard_build_seconds"] else "-") + " | "
          f"{_metric(r, 'stard_dense', 'recall@100')} | "
          f"{_metric(r, 'stard_hybrid', 'recall@100')} | {_metric(r, 'stard_hybrid', 'mrr@10')} "
          f"| {_metric(r, 'stard_hybrid', 'ndcg@10')} | "
          f"{_metric(r, 'ja_appi_hybrid', 'recall@10')} |"
          for r in rows], "",
        "The full-build seconds come from each depth's own run of bench/student_depths.py "
        "(one process, nothing else running), on that run's CPU: "
        + "; ".join(f"{r['bundle']}: {r['cpu']}" for r in rows if r["cpu"])
        + ". Compare depths by the articles/s column, which was measured side by side.", "",
        "A row with '-' for quality is a depth whose student was not evaluated on dev: its "
        "speed is measured all the same (speed does not depend on the weights).", "",
        *([args.note, ""] if args.note else []),
        "Reproduce: see the docstring of `bench/student_depth_table.py`.",
    ]
    write_report(args.results, args.name, results, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
