"""How many tokens of each passage the late-interaction reranker should read (issue 19): on a
**full** index, its dev questions answered as ``lexedge search`` answers them, the top 20
re-scored with passages read to each cap, at the bundle's reranker weight for the index's
language; quality and latency (the whole search, and its re-ranking stage), every cap in one
process and each question taken by every cap in turn, so the machine's pace falls on all alike.

    lexedge index build --docs ../shared/data/stard/corpus.jsonl --bundle builtin --out work-out/idx_stard
    python bench/passage_cap.py --index stard=work-out/idx_stard --caps 64 96 128 192 256

Each cap is asked as a search asks it, ``rerank_tokens`` (``lexedge search --rerank-tokens``).
The bundle's own choice (``lexedge late-interaction`` picks the cap per language on dev) is
in its manifest, ``reranker.passage_max_length_by_analyzer``. Writes
``bench/results/NAME.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from compute_bound import _cpu_flags
from lock_fsync_cost import cpu_model
from report import write_report

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"


def measure(index: Path, data: Path, caps: list[int], rerank: int, rounds: int) -> dict:
    from lexedge.runtime.datasets import load_qrels, load_queries
    from lexedge.runtime.metrics import mrr_at_k, ndcg_at_k
    from lexedge.runtime.searcher import Searcher

    searcher = Searcher(index)
    if searcher.reranker is None or not hasattr(searcher.reranker, "token_states"):
        raise SystemExit(f"{index}: its bundle has no late-interaction reranker")
    queries = load_queries(data / "queries.jsonl")
    dev = load_qrels(data / "qrels" / "dev.tsv", queries)
    rows = {cap: {"mrr@10": [], "ndcg@10": [], "total": [], "rerank": []} for cap in caps}
    searcher.search(queries[next(iter(dev))], rerank=rerank)  # sessions made, caches warm
    for round_ in range(rounds):
        for query_id, judged in dev.items():
            for cap in caps:
                result = searcher.search(queries[query_id], rerank=rerank, rerank_tokens=cap)
                row = rows[cap]
                row["total"].append(result.timings_ms["total"])
                row["rerank"].append(result.timings_ms["rerank"])
                if round_ == 0:
                    ranking = [hit.id for hit in result.hits]
                    row["mrr@10"].append(mrr_at_k(ranking, judged, 10))
                    row["ndcg@10"].append(ndcg_at_k(ranking, judged, 10))
    return {"queries": len(dev), "rerank_weight": searcher.rerank_weight, "caps": {
        str(cap): {"mrr@10": round(float(np.mean(row["mrr@10"])), 4),
                   "ndcg@10": round(float(np.mean(row["ndcg@10"])), 4),
                   **{f"{stage}_p{q}_ms": round(float(np.percentile(row[stage], q)), 1)
                      for stage in ("total", "rerank") for q in (50, 95)}}
        for cap, row in rows.items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", action="append", required=True, metavar="DATASET=DIR",
                        help="a full index built with the built-in bundle")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--caps", type=int, nargs="+", default=[64, 96, 128, 192, 256])
    parser.add_argument("--rerank", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2,
                        help="passes over the dev questions for the timings")
    parser.add_argument("--name", default="passage_cap")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results = {"cpu": cpu_model(), "flags": _cpu_flags(), "cores": os.cpu_count(),
               "rerank": args.rerank, "rounds": args.rounds, "rows": {}}
    for spec in args.index:
        dataset, index = spec.split("=", 1)
        results["rows"][dataset] = measure(Path(index), args.data / dataset, args.caps,
                                           args.rerank, args.rounds)
        print(dataset, results["rows"][dataset], flush=True)
    lines = [f"# Passage tokens read by the late-interaction reranker (top {args.rerank} "
             "re-scored)", "", f"CPU: {results['cpu']} ({results['flags']}), "
             f"{results['cores']} cores. Each dataset's **full** corpus and dev questions, "
             "served as `lexedge search` serves them at the bundle's reranker weight for the "
             f"index's language; every cap in one process, each question by every cap in turn; "
             f"timings over {args.rounds} passes.", "",
             "| dataset | cap (tokens) | MRR@10 | nDCG@10 | search p50 ms | search p95 ms | "
             "re-ranking p50 ms | re-ranking p95 ms |", "|---|---|---|---|---|---|---|---|"]
    for dataset, row in results["rows"].items():
        for cap, cells in row["caps"].items():
            lines.append(f"| {dataset} ({row['queries']} q, weight {row['rerank_weight']}) | "
                         f"{cap} | {cells['mrr@10']:.4f} | {cells['ndcg@10']:.4f} | "
                         f"{cells['total_p50_ms']:.1f} | {cells['total_p95_ms']:.1f} | "
                         f"{cells['rerank_p50_ms']:.1f} | {cells['rerank_p95_ms']:.1f} |")
    lines += ["", "The weight is the one chosen with the bundle's own cap; the other caps are "
              "shown at that weight. Reproduce: the commands in `bench/passage_cap.py`'s "
              "docstring."]
    write_report(args.out, args.name, results, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
