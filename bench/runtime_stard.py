"""The laptop path on STARD: index build with the INT8 bundle, index size, resident memory
while searching, per-query latency and Recall@K for several retrieval budgets, with and
without reranking — the recall–budget trade-off as a table and a plot.

    python bench/runtime_stard.py --bundle BUNDLE [--index IDX] [--out bench/results]

Latencies are measured one query at a time (what a user waits for), in one process, after a
warm-up; Recall@K for BM25, dense and hybrid comes from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from lexedge.runtime.settings import SearchSettings

from report import write_json_result, write_markdown_result

HERE = Path(__file__).resolve().parent
BUDGETS = (20, 60, 100, 200)
SERVED = SearchSettings()  # what `lexedge search` does unless told otherwise
RERANK_TOP = SERVED.rerank


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure_search(index_path: Path, bundle_path: Path, data: Path,
                   latency_queries: int) -> dict:
    """Runs in a fresh process so its resident memory is that of searching alone."""
    from lexedge.runtime.datasets import BeirDataset
    from lexedge.runtime.metrics import evaluate
    from lexedge.runtime.searcher import Searcher

    dataset = BeirDataset(data)
    queries = dataset.queries()
    qrels = dataset.qrels("dev")
    searcher = Searcher(index_path, bundle=bundle_path)  # the bundle measured, not the one
    # recorded at build time (an index serves any bundle with the same embedder)
    rss_loaded = _rss_mb()
    timed = list(queries.values())[:latency_queries]
    for query in timed[:10]:  # warm-up: first calls allocate onnxruntime buffers
        searcher.search(query)
    result = {"rss_after_load_mb": rss_loaded, "latency_ms": {}, "recall": {}}
    for budget in BUDGETS:
        for rerank in ((0, RERANK_TOP) if searcher.has_reranker else (0,)):
            latencies = []
            for query in timed:
                started = time.perf_counter()
                searcher.search(query, budget=budget, rerank=rerank, top=10)
                latencies.append((time.perf_counter() - started) * 1000)
            result["latency_ms"][f"k{budget}_rr{rerank}"] = {
                "p50": statistics.median(latencies), "p95": percentile(latencies, 0.95),
                "mean": statistics.fmean(latencies), "queries": len(latencies)}
    for method, alpha in (("bm25", 0.0), ("dense", 1.0), ("hybrid", SERVED.alpha)):
        runs = {}
        for query_id in qrels:
            hits = searcher.search(queries[query_id], budget=max(BUDGETS), rerank=0,
                                   alpha=alpha, top=max(BUDGETS)).hits
            runs[query_id] = [(h.id, h.score) for h in hits]
        result["recall"][method] = evaluate(runs, qrels)
    if searcher.has_reranker:
        for budget in BUDGETS:
            runs = {q: [(h.id, h.score) for h in searcher.search(
                queries[q], budget=budget, rerank=RERANK_TOP, top=budget).hits] for q in qrels}
            result["recall"][f"pipeline_k{budget}"] = evaluate(runs, qrels)
    result["rss_peak_mb"] = _rss_mb("VmHWM")
    result["rss_after_search_mb"] = _rss_mb()
    return result


def _rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bundle_recipe(manifest: dict) -> str:
    """The export command that makes such a bundle, from the bundle's own manifest."""
    config = manifest.get("export", {}).get("config", {})
    command = f"lexedge export --{config.get('precision', 'int8')} --embedder " \
              f"{config.get('embedder', 'default')}"
    if config.get("reranker"):
        command += f" --reranker {config['reranker']}"
    return command + " --out B"


def render(result: dict) -> str:
    from lexedge.runtime.metrics import RECALL_CUTOFFS

    table_cutoffs = [k for k in RECALL_CUTOFFS if k >= 10]
    build, search = result["build"], result["search"]
    lines = [f"# lexedge runtime on STARD ({build['documents']:,} articles)", "",
             f"Machine: {result['machine']}. Bundle: `{result['bundle']}` "
             f"(embedder {result['embedder_precision']}, reranker "
             f"{result['reranker'] or 'none'}).", "",
             "| index build | articles/s | index on disk | RSS searching (peak) |",
             "|---|---|---|---|",
             f"| {build['seconds'] / 60:.1f} min | {build['documents'] / build['seconds']:.0f} | "
             f"{build['bytes'] / 1e6:.0f} MB | {search['rss_after_search_mb']:.0f} MB "
             f"({search['rss_peak_mb']:.0f} MB) |", "",
             "## Latency per query (ms, one query at a time)", "",
             "| budget K | rerank top | p50 | p95 |", "|---|---|---|---|"]
    for key, value in search["latency_ms"].items():
        budget, rerank = key[1:].split("_rr")
        lines.append(f"| {budget} | {rerank} | {value['p50']:.1f} | {value['p95']:.1f} |")
    lines += ["", "## Recall@K on STARD dev (124 queries)", "",
              "| method | " + " | ".join(f"R@{k}" for k in table_cutoffs)
              + " | MRR@10 | nDCG@10 |", "|---|" + "---|" * (len(table_cutoffs) + 2)]
    for method, metrics in search["recall"].items():
        lines.append(f"| {method} | " + " | ".join(f"{metrics[f'recall@{k}']:.3f}"
                                                    for k in table_cutoffs)
                     + f" | {metrics['mrr@10']:.3f} | {metrics['ndcg@10']:.3f} |")
    lines += ["", "![recall vs budget](runtime_stard.png)", "",
              f"Reproduce: `{result.get('bundle_recipe', 'lexedge export --int8 --out B')}` "
              "(B = the bundle), then `python bench/runtime_stard.py --bundle B`."]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    from lexedge.runtime.metrics import RECALL_CUTOFFS

    cutoffs = RECALL_CUTOFFS
    for method, metrics in result["search"]["recall"].items():
        if method.startswith("pipeline"):
            continue
        left.plot(cutoffs, [metrics[f"recall@{k}"] for k in cutoffs], marker="o", label=method)
    left.set_xscale("log")
    left.set_xlabel("retrieval budget K")
    left.set_ylabel("Recall@K (STARD dev)")
    left.legend()
    left.grid(alpha=0.3)
    for rerank in sorted({k.split("_rr")[1] for k in result["search"]["latency_ms"]}):
        series = [result["search"]["latency_ms"][f"k{k}_rr{rerank}"]["p95"] for k in BUDGETS]
        right.plot(BUDGETS, series, marker="o", label=f"p95, rerank top {rerank}")
    right.set_xlabel("retrieval budget K")
    right.set_ylabel("latency per query (ms)")
    right.legend()
    right.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared/data/stard")
    parser.add_argument("--index", type=Path, default=Path("work-out/runtime-stard-index"))
    parser.add_argument("--reuse-index", action="store_true",
                        help="measure an existing index instead of building it")
    parser.add_argument("--latency-queries", type=int, default=200)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--search-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.search_only:
        print(json.dumps(measure_search(args.index, args.bundle, args.data,
                                        args.latency_queries)))
        return

    from lexedge.runtime.bundle import Bundle
    from lexedge.runtime.index import Index

    args.bundle, args.index = args.bundle.resolve(), args.index.resolve()  # the search runs in
    bundle = Bundle.load(args.bundle)                                       # another folder
    if args.reuse_index:
        index = Index.load(args.index, bundle=bundle)
        seconds = index.manifest["build_seconds"]
    else:
        started = time.perf_counter()
        index = Index.build(args.data / "corpus.jsonl", args.index, bundle=bundle)
        seconds = time.perf_counter() - started
    search = subprocess.run(
        [sys.executable, __file__, "--search-only", "--bundle", str(args.bundle), "--index",
         str(args.index), "--data", str(args.data), "--latency-queries",
         str(args.latency_queries)], capture_output=True, text=True, check=True, cwd=HERE)
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}",
        "bundle": str(args.bundle), "bundle_recipe": bundle_recipe(bundle.manifest),
        "embedder_precision":
            bundle.manifest["embedder"].get("precision"),
        "reranker": bundle.manifest["reranker"] and bundle.manifest["reranker"].get("precision"),
        "build": {"seconds": seconds, "documents": len(index),
                  "bytes": folder_bytes(args.index)},
        "search": json.loads(search.stdout.strip().splitlines()[-1]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_result(args.out / "runtime_stard.json", result)
    plot(result, args.out / "runtime_stard.png")
    markdown = render(result)
    write_markdown_result(args.out / "runtime_stard.md", markdown)
    print(markdown)


if __name__ == "__main__":
    main()
