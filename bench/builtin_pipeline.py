"""The served pipeline of a bundle with a reranker (issue 19, items 3 and 4): the **full**
STARD and ja_appi indexes, their dev questions answered as ``lexedge eval --method pipeline``
answers them (INT8 ONNX, BM25 + dense fused at the bundle's alpha, the top N re-scored), with
re-ranking off and at each reranker weight W, in one run; W is chosen on dev here.

    python bench/builtin_pipeline.py --bundle work-out/builtin/L3-rr --name builtin_pipeline

``--index DATASET=DIR`` reuses a full index already built with the same embedder (the
re-ranker is always the bundle's: an index is opened with ``--bundle``'s models).
Writes ``bench/results/NAME.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from compute_bound import _cpu_flags
from lock_fsync_cost import cpu_model
from report import metric_cells, write_report
from student_depths import evaluate

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--index", action="append", default=[], metavar="DATASET=DIR")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--datasets", nargs="+", default=["stard", "ja_appi"])
    parser.add_argument("--rerank", type=int, default=20)
    parser.add_argument("--weights", type=float, nargs="+", default=[1.0, 0.7, 0.5, 0.3])
    parser.add_argument("--work", type=Path, default=Path("work-out/pipeline"))
    parser.add_argument("--name", default="builtin_pipeline")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lexedge.runtime.bundle import Bundle
    from lexedge.runtime.index import Index

    bundle = Bundle.load(args.bundle)
    if not bundle.has_reranker:
        raise SystemExit(f"{args.bundle}: this bundle has no reranker")
    given = dict(spec.split("=", 1) for spec in args.index)
    results = {"cpu": cpu_model(), "flags": _cpu_flags(), "cores": os.cpu_count(),
               "bundle": str(args.bundle), "alpha": bundle.manifest["search"],
               "rerank": args.rerank, "rows": []}
    for dataset in args.datasets:
        index = Path(given[dataset]) if dataset in given else args.work / dataset
        row = {"dataset": dataset}
        if dataset not in given:
            started = time.perf_counter()
            Index.build(args.data / dataset / "corpus.jsonl", index, bundle=bundle)
            row["build_seconds"] = round(time.perf_counter() - started, 1)
        row["documents"] = len(Index.load(index, bundle=bundle))
        data = args.data / dataset
        row["hybrid"] = evaluate(index, data, "hybrid", bundle=str(args.bundle), rerank=0)
        # the baseline of the W rows: the same pipeline and budget, nothing re-scored (the
        # hybrid row fuses lists as deep as the run, so its fusion differs)
        row["first_stage"] = evaluate(index, data, "pipeline", bundle=str(args.bundle),
                                      rerank=0)
        row["pipeline"] = {str(w): evaluate(index, data, "pipeline", bundle=str(args.bundle),
                                            rerank=args.rerank, rerank_weight=w)
                           for w in args.weights}
        results["rows"].append(row)
        print(row, flush=True)
    # one W for every language, the best dev MRR@10 summed over the datasets (ties: larger W)
    chosen = max(args.weights, key=lambda w: (sum(
        row["pipeline"][str(w)]["mrr@10"] for row in results["rows"]), w))
    results["chosen_weight"] = chosen
    lines = [
        f"# The served pipeline with the reranker (re-scoring the top {args.rerank})", "",
        f"CPU: {results['cpu']} ({results['flags']}), {results['cores']} cores. Bundle "
        f"`{args.bundle}` (INT8); each dataset's **full** corpus indexed, its dev questions "
        "answered through the served path: `hybrid` is BM25 + dense at the bundle's alpha "
        "as `lexedge eval --method hybrid` measures it (each list as deep as the run); the "
        "pipeline rows fuse the budget's 100 per retriever, as `lexedge search` does, and "
        f"`W = w` re-scores their top {args.rerank}, ordered by w x reranker + (1 - w) x "
        "first-stage score (W = 1: the reranker alone). A W row is compared with `pipeline, "
        "nothing re-scored`.", ""]
    for row in results["rows"]:
        lines += [f"## {row['dataset']} dev ({row['documents']:,} articles, "
                  f"{row['hybrid']['queries']} queries)", "",
                  "| row | R@10 | R@100 | MRR@10 | nDCG@10 | queries/s |",
                  "|---|---|---|---|---|---|"]
        for label, m in [("hybrid (fused as deep as the run)", row["hybrid"]),
                         ("pipeline, nothing re-scored", row["first_stage"])] + [
                (f"W = {w}", m) for w, m in row["pipeline"].items()]:
            lines.append(f"| {label} | {metric_cells(m)} | {m['queries_per_second']:.1f} |")
        lines.append("")
    lines += [f"Chosen on dev (one weight for both languages, best summed MRR@10): **W = "
              f"{chosen}**.", "",
              f"Reproduce: `python bench/builtin_pipeline.py --bundle {args.bundle} --name "
              f"{args.name}`"]
    write_report(args.out, args.name, results, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
