"""The depth table (issue 19, item 2): for each student depth, quality on the full-corpus dev
sets (from ``bench/results/student_depths_<NAME>.json``, written by ``bench/student_depths.py``)
beside the passage-encoding speed of every depth and of the zero-shot e5-small INT8 bundle,
measured side by side in this one run on the same STARD articles.

    python bench/student_depth_table.py --baseline work-out/e5-int8 \\
        --bundle L2=work-out/builtin/L2 --bundle L3=work-out/builtin/L3 \\
        --bundle L4=work-out/builtin/L4 --alpha 0.5

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--bundle", action="append", required=True, metavar="NAME=DIR")
    parser.add_argument("--alpha", default="0.5", help="the hybrid row shown")
    parser.add_argument("--articles", type=int, default=400)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    from lexedge.runtime.datasets import BeirDataset

    bundles = dict(spec.split("=", 1) for spec in args.bundle)
    documents = [doc.indexed_text for doc in BeirDataset(args.data / "stard").corpus()]
    rng = np.random.default_rng(13)
    sample = [documents[i] for i in sorted(rng.choice(len(documents), args.articles,
                                                      replace=False))]
    speed = throughput({BASELINE: args.baseline, **bundles}, sample)
    rows = []
    for name in bundles:
        measured = json.loads((args.results / f"student_depths_{name}.json")
                              .read_text(encoding="utf-8"))
        by_set = {row["dataset"]: row for row in measured["rows"]}
        stard, appi = by_set.get("stard"), by_set.get("ja_appi")
        rows.append({"bundle": name, "layers": stard["layers"], "onnx_mb": stard["onnx_mb"],
                     "articles_per_s": speed[name],
                     "speedup": round(speed[name] / speed[BASELINE], 2),
                     "stard_build_seconds": stard["build_seconds"],
                     "stard_dense": stard["dense"], "stard_hybrid": stard["hybrid"][args.alpha],
                     "ja_appi_hybrid": appi["hybrid"][args.alpha] if appi else None})
    results = {"cpu": cpu_model(), "flags": _cpu_flags(), "cores": os.cpu_count(),
               "articles": args.articles, "baseline_articles_per_s": speed[BASELINE],
               "alpha": args.alpha, "rows": rows}
    lines = [
        "# Student depth: quality on full-corpus dev against speed", "",
        f"CPU: {results['cpu']} ({results['flags']}), {results['cores']} cores. Speed: "
        f"{args.articles} STARD articles encoded by every bundle in this one run, rounds "
        f"alternating (median of 2); {BASELINE}: {speed[BASELINE]} articles/s. Quality: the "
        "served INT8 path over the **full** corpora (STARD 58,513 articles, 124 dev "
        f"questions; ja_appi 12,116 articles, 80 dev clauses), hybrid at alpha {args.alpha} "
        "(bench/results/student_depths_<depth>.md have every alpha and the dense rows).", "",
        "| student | layers | embedder.onnx MB | articles/s | vs e5-small | STARD full build s "
        "| STARD dense R@100 | STARD hybrid R@100 | MRR@10 | nDCG@10 | ja_appi hybrid R@10 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *[f"| {r['bundle']} | {r['layers']} | {r['onnx_mb']} | {r['articles_per_s']} | "
          f"{r['speedup']:.2f}x | {r['stard_build_seconds']:.0f} | "
          f"{r['stard_dense']['recall@100']:.4f} | {r['stard_hybrid']['recall@100']:.4f} | "
          f"{r['stard_hybrid']['mrr@10']:.4f} | {r['stard_hybrid']['ndcg@10']:.4f} | "
          + (f"{r['ja_appi_hybrid']['recall@10']:.4f}" if r["ja_appi_hybrid"] else "-") + " |"
          for r in rows], "",
        "The full-build seconds come from each depth's own run of bench/student_depths.py "
        "(one process, nothing else running); compare depths by the articles/s column, "
        "which was measured side by side.", "",
        "Reproduce: see the docstring of `bench/student_depth_table.py`.",
    ]
    write_report(args.results, "student_depth_table", results, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
