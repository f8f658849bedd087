"""Exact dense search beside the HNSW graph (issue 19: the graph's build is a quarter of a
full index build with the built-in bundle), on the same real vectors, in one process: build
(and save) time, query latency at K = 100 one query at a time as ``lexedge search`` runs it,
and recall@100 against exact inner-product search. Then the exact search alone over
:data:`~lexedge.runtime.dense.EXACT_LIMIT` vectors (the real ones repeated with a little
noise): what the largest index searched exactly pays per query.

    python bench/dense_exact.py --index work-out/teacher2_shipped2/stard-F512s3t2

Writes ``bench/results/<name>.{json,md}`` (``dense_exact`` by default).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ann_choice import real_vectors
from compute_bound import _cpu_flags
from lock_fsync_cost import cpu_model
from report import write_report

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"


def measure(kind, vectors: np.ndarray, queries: np.ndarray, exact: np.ndarray, k: int) -> dict:
    """Build and save ``kind`` (a dense index class) over ``vectors``, then search each query."""
    from lexedge.runtime.dense import ef_for_budget

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        index = kind.build(vectors)
        index.save(folder)
        build = time.perf_counter() - started
        times, found = [], []
        for query in queries:
            begun = time.perf_counter()
            labels, _ = index.search(query, k, ef=ef_for_budget(k))
            times.append((time.perf_counter() - begun) * 1000)
            found.append(labels[0])
        size = sum(path.stat().st_size for path in Path(folder).iterdir())
    recall = None if exact is None else float(
        np.mean([len(set(f) & set(e)) / k for f, e in zip(found, exact)]))
    return {"vectors": len(vectors), "build_seconds": round(build, 2),
            "p50_ms": round(float(np.percentile(times, 50)), 3),
            "p95_ms": round(float(np.percentile(times, 95)), 3),
            "recall_at_k": None if recall is None else round(recall, 4),
            "megabytes": round(size / 1e6, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, required=True, help="an index with vectors")
    parser.add_argument("--data", type=Path, default=DATA / "stard")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--name", default="dense_exact")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lexedge.runtime.dense import EXACT_LIMIT, DenseIndex, hnsw_library
    from lexedge.runtime.exact import ExactIndex

    vectors, texts, queries, exact = real_vectors(args.index, args.data, args.k)
    results = []
    for name, kind in (("exact", ExactIndex), (f"HNSW graph ({hnsw_library()})", DenseIndex)):
        results.append({"dense index": name, **measure(kind, vectors, queries, exact, args.k)})
        print(results[-1], flush=True)
    rng = np.random.default_rng(0)
    repeats = -(-EXACT_LIMIT // len(vectors))
    scaled = np.concatenate([vectors + 0.01 * rng.standard_normal(vectors.shape,
                                                                  dtype=np.float32)
                             for _ in range(repeats)])[:EXACT_LIMIT]
    scaled /= np.linalg.norm(scaled, axis=1, keepdims=True)
    results.append({"dense index": "exact, at EXACT_LIMIT",
                    **measure(ExactIndex, scaled, queries, None, args.k)})
    print(results[-1], flush=True)
    report = {"cpu": cpu_model(), "flags": _cpu_flags(), "cores": os.cpu_count(),
              "dimension": int(vectors.shape[1]), "queries": len(texts), "k": args.k,
              "exact_limit": EXACT_LIMIT, "rows": results}
    lines = [
        "# Dense index: exact search beside the HNSW graph (one run)", "",
        f"CPU: {report['cpu']} ({report['flags']}), {report['cores']} cores. Vectors: the "
        f"**full** STARD corpus as indexed ({len(vectors):,} x {vectors.shape[1]}, index "
        f"`{args.index.name}`), {len(texts)} dev questions embedded by the same bundle, "
        f"searched one at a time at K = {args.k} (the graph: M 32, ef_construction 200, one "
        f"thread, ef = 2K, as lexedge builds it). The last row: the same vectors repeated with "
        f"noise up to EXACT_LIMIT = {EXACT_LIMIT:,}, the most an index searches exactly.", "",
        "| dense index | vectors | build + save s | p50 ms | p95 ms | recall@100 | on disk MB |",
        "|---|---|---|---|---|---|---|",
        *[f"| {r['dense index']} | {r['vectors']:,} | {r['build_seconds']} | {r['p50_ms']} | "
          f"{r['p95_ms']} | {'–' if r['recall_at_k'] is None else r['recall_at_k']} | "
          f"{r['megabytes']} |" for r in results], "",
        "Reproduce: see the docstring of `bench/dense_exact.py`.",
    ]
    write_report(args.out, args.name, report, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
