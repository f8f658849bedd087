"""Which depth the laptop student gets (issue 19, item 2): each candidate INT8 bundle indexes
the **full** STARD corpus (58,513 articles) and answers its dev questions, in one run, with
the index-build throughput beside the quality, and ja_appi dev for the same bundles.

    python bench/student_depths.py --bundle L2=work-out/builtin/L2 \\
        --bundle L3=work-out/builtin/L3 --bundle L4=work-out/builtin/L4

A bundle exported ``--fp32`` beside its INT8 twin measures what INT8 costs at full scale.

Rows: dense alone and hybrid (BM25 + dense, normalised weighted fusion) at the alphas given,
all through the served path (``lexedge eval --method dense|hybrid --index``), the fused list
as deep as the run (200; each retriever fetches the default pool, 3 ×, before the fusion);
then ``served``: what ``lexedge search`` gives by default, the bundle's own alpha at the
default budget (100, each list fetched 3 × 100 deep before fusing). Dev is where
the choice (depth, alpha) is made; nothing here reads another split.
Writes ``bench/results/student_depths.{json,md}``; indexes stay in ``--work`` for the latency
bench (``bench/builtin_speed.py``).
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

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
SHOWN = ("recall@10", "recall@100", "mrr@10", "ndcg@10")


def evaluate(index: Path, data: Path, method: str, alpha: float | None = None,
             **settings) -> dict:
    """Dev metrics of ``method`` served from ``index``; ``settings``: more EvalConfig fields
    (``bundle``, ``rerank``, ``rerank_weight`` …)."""
    from lexedge.runtime.evaluation import EvalConfig, run_evaluation

    metrics, _ = run_evaluation(EvalConfig(data_dir=str(data), split="dev", method=method,
                                           index=str(index), alpha=alpha, **settings))
    return {name: round(metrics[name], 4) for name in SHOWN} | {
        "queries": metrics["queries"], "queries_per_second": metrics["queries_per_second"],
        "alpha": metrics["alpha"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", action="append", required=True, metavar="NAME=DIR")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--datasets", nargs="+", default=["stard", "ja_appi"])
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--work", type=Path, default=Path("work-out/depths"))
    parser.add_argument("--name", default="student_depths")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lexedge.runtime.bundle import Bundle
    from lexedge.runtime.index import Index
    from lexedge.runtime.settings import SearchSettings

    results = {"cpu": cpu_model(), "flags": _cpu_flags(), "cores": os.cpu_count(), "rows": []}
    vocabularies = {}
    for spec in args.bundle:
        name, _, folder = spec.partition("=")
        bundle = Bundle.load(folder)
        entry = bundle.manifest["embedder"]
        kept = (entry.get("vocabulary") or {}).get("kept")
        vocabularies[name] = (f"{entry.get('precision', 'int8').upper()}, "
                              + (f"{kept:,} pieces, trimmed" if kept else "full vocabulary"))
        for dataset in args.datasets:
            index = args.work / f"{dataset}-{name}"
            started = time.perf_counter()
            built = Index.build(args.data / dataset / "corpus.jsonl", index, bundle=bundle)
            seconds = time.perf_counter() - started
            row = {"bundle": name, "dataset": dataset, "documents": len(built),
                   "layers": entry.get("layers"), "precision": entry.get("precision"),
                   "max_length": entry["max_length"], "build_seconds": round(seconds, 1),
                   "articles_per_s": round(len(built) / seconds, 1),
                   "onnx_mb": round((bundle.path / entry["file"]).stat().st_size / 1e6, 1),
                   "dense": evaluate(index, args.data / dataset, "dense", 1.0),
                   "hybrid": {str(a): evaluate(index, args.data / dataset, "hybrid", a)
                              for a in args.alphas},
                   # what `lexedge search` serves by default: the bundle's own alpha at the
                   # default budget and pool
                   "served": evaluate(index, args.data / dataset, "hybrid", None,
                                      depth=SearchSettings.budget),
                   "served_budget": SearchSettings.budget, "served_pool": SearchSettings.pool}
            row["served_alpha"] = row["served"]["alpha"]  # the bundle's, for this language
            results["rows"].append(row)
            print(row, flush=True)
    lines = [
        "# Student depth: quality on full-corpus dev against indexing speed (one run)", "",
        f"CPU: {results['cpu']} ({results['flags']}), {results['cores']} cores. Bundles: "
        + "; ".join(f"{name}: {vocab}" for name, vocab in vocabularies.items())
        + ". Each indexes the **full** corpus (BM25 + dense, one process) and answers the "
        "dev questions through the served path.", ""]
    for dataset in args.datasets:
        rows = [r for r in results["rows"] if r["dataset"] == dataset]
        if not rows:
            continue
        lines += [f"## {dataset} dev ({rows[0]['documents']:,} articles, "
                  f"{rows[0]['dense']['queries']} queries)", "",
                  "| bundle | build s | articles/s | row | R@10 | R@100 | MRR@10 | nDCG@10 |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in rows:
            variants = [("dense", row["dense"])] + [(f"hybrid a={a}", m)
                                                    for a, m in row["hybrid"].items()]
            if "served" in row:
                variants.append((f"served: a={row['served_alpha']}, budget "
                                 f"{row['served_budget']}"
                                 + (f", pool {row['served_pool']}" if "served_pool" in row
                                    else ""), row["served"]))
            for label, m in variants:
                lines.append(f"| {row['bundle']} | {row['build_seconds']} | "
                             f"{row['articles_per_s']} | {label} | {metric_cells(m)} |")
        lines.append("")
    lines.append("Reproduce: see the docstring of `bench/student_depths.py`.")
    write_report(args.out, args.name, results, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
