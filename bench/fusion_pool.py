"""How deep each retriever fetches before the fusion (the ``pool`` search setting): the served
path (``Searcher.search``, exactly as ``lexedge search``) over **full** indexes, at budget
K = 100, for pool 1 (the two top-K lists alone) up to 4, side by side in one run: dev quality,
the paired difference of MRR@10 and nDCG@10 against pool 1 (95 % bootstrap interval and
permutation p, as ``served_pipeline_stard.py``), and the latency per query.

    python bench/fusion_pool.py --index stard=work-out/depths6/stard-L3s3k \\
        --index ja_appi=work-out/depths6/ja_appi-L3s3k

Each ``--index`` is ``DATASET=INDEX_DIR``: an index of the whole ``../shared/data/DATASET``
corpus built with the bundle under test (``bench/student_depths.py`` keeps them).
Writes ``bench/results/fusion_pool.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from compute_bound import _cpu_flags
from lock_fsync_cost import cpu_model
from report import metric_cells, portable, write_report
from served_pipeline_stard import paired_test, per_query

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
SHOWN = ("recall@10", "recall@100", "mrr@10", "ndcg@10")


def measure(index: Path, data: Path, pools: list[int], budget: int) -> dict:
    from lexedge.runtime.datasets import BeirDataset
    from lexedge.runtime.evaluation import served_order
    from lexedge.runtime.metrics import evaluate
    from lexedge.runtime.searcher import Searcher

    dataset = BeirDataset(data)
    queries = dataset.queries()
    searcher = Searcher(index)
    qrels = dataset.qrels("dev", query_ids=queries)
    searcher.search(queries[next(iter(qrels))], budget=budget, rerank=0)  # warm
    rows = {}
    for pool in pools:
        run, times = {}, []
        for query_id in qrels:
            started = time.perf_counter()
            result = searcher.search(queries[query_id], budget=budget, pool=pool, rerank=0,
                                     top=budget)
            times.append((time.perf_counter() - started) * 1000)
            run[query_id] = served_order(result.hits)
        metrics = evaluate(run, qrels)
        rows[pool] = {"metrics": {name: metrics[name] for name in SHOWN},
                      "per_query": per_query(run, qrels),
                      "p50_ms": float(np.percentile(times, 50)),
                      "p95_ms": float(np.percentile(times, 95))}
    for pool, row in rows.items():
        if pool != pools[0]:
            row["against_first"] = {name: paired_test(row["per_query"][name],
                                                      rows[pools[0]]["per_query"][name])
                                    for name in row["per_query"]}
    return {"queries": len(qrels), "corpus": len(searcher.index.docs), "alpha": searcher.alpha,
            "rows": {str(pool): {k: v for k, v in row.items() if k != "per_query"}
                     for pool, row in rows.items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", action="append", required=True, metavar="DATASET=DIR")
    parser.add_argument("--pools", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--name", default="fusion_pool")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results = {"cpu": cpu_model(), "flags": _cpu_flags(), "budget": args.budget,
               "datasets": {}}
    lines = ["# Fusion pool: how deep each retriever fetches before the fusion (one run)", "",
             f"CPU: {cpu_model()} ({_cpu_flags()}), {os.cpu_count()} cores. Served path "
             f"(`lexedge search`), budget K = {args.budget}, no re-ranking; each retriever "
             "fetches pool × K candidates and the weighted fusion keeps the best K. Latency "
             "is per search returning all K hits, each with its snippet and matched terms "
             "(Japanese articles are analysed by MeCab for those: `lexedge search` shows "
             "10).", ""]
    for spec in args.index:
        name, _, folder = spec.partition("=")
        measured = measure(Path(folder), args.data / name, args.pools, args.budget)
        results["datasets"][name] = {"index": portable(folder), **measured}
        lines += [f"## {name} dev ({measured['corpus']:,} articles, full corpus; "
                  f"{measured['queries']} queries; alpha {measured['alpha']:g})", "",
                  "| pool | R@10 | R@100 | MRR@10 | nDCG@10 | ΔMRR@10 vs pool 1 [95 % CI], p "
                  "| p50 ms | p95 ms |", "|---|---|---|---|---|---|---|---|"]
        for pool, row in measured["rows"].items():
            against = row.get("against_first", {}).get("mrr@10")
            versus = (f"{against['mean_difference']:+.4f} [{against['ci95'][0]:+.3f}, "
                      f"{against['ci95'][1]:+.3f}], p {against['p_value']:.2f}"
                      if against else "–")
            lines.append(f"| {pool} | {metric_cells(row['metrics'])} | {versus} | "
                         f"{row['p50_ms']:.1f} | {row['p95_ms']:.1f} |")
        lines.append("")
    lines.append("Reproduce: see the docstring of `bench/fusion_pool.py`.")
    write_report(args.out, args.name, results, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
