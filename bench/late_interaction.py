"""The built-in's late-interaction reranker as served (issue 19, item 3): on the **full**
STARD and ja_appi indexes, the dev questions answered as ``lexedge eval --method pipeline``
answers them with nothing re-scored and with the top 20 re-scored at the bundle's weights,
then search latency (p50/p95 at K = 100) and the search process's peak memory with re-ranking
off and on, and a cold ``lexedge search``, in one run.

    lexedge index build --docs ../shared/data/stard/corpus.jsonl --bundle builtin --out work-out/idx_stard
    lexedge index build --docs ../shared/data/ja_appi/corpus.jsonl --bundle builtin --out work-out/idx_ja
    lexedge late-interaction --data ../shared/data/ja_appi --index work-out/idx_ja \\
        --data ../shared/data/stard --index work-out/idx_stard --out work-out/li-final
    python bench/late_interaction.py --index stard=work-out/idx_stard --index ja_appi=work-out/idx_ja

(the bundle written by ``lexedge late-interaction`` is the built-in's folder, ``runtime/builtin``).
Writes ``bench/results/NAME.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from builtin_speed import cold_search, searching
from compute_bound import _cpu_flags
from lock_fsync_cost import cpu_model
from report import metric_cells, write_report
from student_depths import evaluate

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", action="append", required=True, metavar="DATASET=DIR",
                        help="a full index built with the built-in bundle")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--rerank", type=int, default=20)
    parser.add_argument("--name", default="late_interaction")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lexedge.runtime.bundle import Bundle
    from lexedge.runtime.builtin import builtin_path
    from lexedge.runtime.datasets import load_qrels, load_queries

    bundle = Bundle.load(builtin_path())
    if not bundle.has_reranker:
        raise SystemExit("the built-in bundle has no reranker")
    entry = bundle.manifest["reranker"]
    results = {"cpu": cpu_model(), "flags": _cpu_flags(), "cores": os.cpu_count(),
               "reranker": {key: entry.get(key) for key in (
                   "kind", "rerank_weight", "rerank_weight_by_analyzer", "passage_max_length",
                   "passage_max_length_by_analyzer")},
               "rerank": args.rerank, "rows": []}
    for spec in args.index:
        dataset, index = spec.split("=", 1)
        data = args.data / dataset
        row = {"dataset": dataset,
               "first_stage": evaluate(Path(index), data, "pipeline", rerank=0),
               "reranked": evaluate(Path(index), data, "pipeline", rerank=args.rerank)}
        queries = load_queries(data / "queries.jsonl")
        dev = [queries[q] for q in load_qrels(data / "qrels" / "dev.tsv")]
        row["search"] = {"off": searching(Path(index), dev, 0),
                         "on": searching(Path(index), dev, args.rerank)}
        row["cold_search_s"] = cold_search(Path(index), dev[0])
        results["rows"].append(row)
        print(json.dumps(row), flush=True)
    lines = [f"# The built-in's late-interaction reranker, served (top {args.rerank} re-scored)",
             "", f"CPU: {results['cpu']} ({results['flags']}), {results['cores']} cores. "
             "Each dataset's **full** corpus, its dev questions through `lexedge search`'s "
             "path (INT8, K = 100, BM25 + dense fused at the bundle's alpha); the reranker "
             "weight is the bundle's for the index's language "
             f"({entry.get('rerank_weight_by_analyzer')}), and so is the number of tokens read "
             f"of each passage ({entry.get('passage_max_length_by_analyzer')}, else "
             f"{entry.get('passage_max_length')}).",
             "", "| dataset | row | R@10 | R@100 | MRR@10 | nDCG@10 | p50 ms | p95 ms | "
             "peak RSS MB |", "|---|---|---|---|---|---|---|---|---|"]
    for row in results["rows"]:
        for label, metrics, search in (("nothing re-scored", row["first_stage"],
                                        row["search"]["off"]),
                                       (f"top {args.rerank} re-scored", row["reranked"],
                                        row["search"]["on"])):
            lines.append(f"| {row['dataset']} ({metrics['queries']} q) | {label} | "
                         f"{metric_cells(metrics)} | {search['p50_ms']:.1f} | "
                         f"{search['p95_ms']:.1f} | {search['peak_rss_mb']:.0f} |")
    lines += ["", "Cold `lexedge search` (process start to answer, median of 3): " + ", ".join(
        f"{row['dataset']} {row['cold_search_s']:.2f} s" for row in results["rows"]) + ".", "",
        "Reproduce: the commands in `bench/late_interaction.py`'s docstring."]
    write_report(args.out, args.name, results, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
