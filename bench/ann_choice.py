"""Which HNSW package (issue 23): ``chroma-hnswlib`` (wheels for Linux, macOS, Windows, x86-64
and ARM64; what lexedge now installs) beside ``hnswlib`` 0.8 (a source distribution: a C++
compiler on every install), on the same real vectors, in one run: build time, query latency
(p50/p95 at K = 100, lexedge's ef = 2K, one thread) and recall@100 against exact search.

The vectors are a full STARD index's (every article, as the built-in bundle embedded them) and
its dev questions embedded by the same bundle. Each package runs in its own interpreter (both
install the module ``hnswlib``):

    python3 -m venv work-out/venv-hnswlib && work-out/venv-hnswlib/bin/pip install hnswlib numpy
    python bench/ann_choice.py --index work-out/depths/stard-L3 \\
        --python chroma-hnswlib=.venv/bin/python --python hnswlib=work-out/venv-hnswlib/bin/python

``--graph M,EF_CONSTRUCTION`` (repeated) compares graph parameters instead, e.g. what a
cheaper graph would cost in recall (issue 19: the graph is a share of every index build):

    python bench/ann_choice.py --index work-out/narrow/depths-e/stard-F512s3 \\
        --python chroma-hnswlib=.venv/bin/python --graph 32,200 --graph 32,100 \\
        --graph 16,200 --graph 16,100 --graph 32,64 --name ann_graph

Writes ``bench/results/<name>.{json,md}`` (``ann_choice`` by default).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from compute_bound import _cpu_flags
from lock_fsync_cost import cpu_model
from report import write_report

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"

WORKER = r"""
import json, sys, time
from importlib import metadata
import numpy as np
import hnswlib
vectors, queries, exact = (np.load(sys.argv[i]) for i in (1, 2, 3))
k, m, ef_construction = (int(sys.argv[i]) for i in (4, 5, 6))
version = None
for name in ("chroma-hnswlib", "hnswlib"):
    try:
        version = f"{name} {metadata.version(name)}"
        break
    except metadata.PackageNotFoundError:
        pass
started = time.perf_counter()
graph = hnswlib.Index(space="ip", dim=vectors.shape[1])
graph.init_index(max_elements=len(vectors), M=m, ef_construction=ef_construction,
                 random_seed=0, allow_replace_deleted=True)
graph.add_items(vectors, np.arange(len(vectors)), num_threads=1)
build = time.perf_counter() - started
graph.set_ef(2 * k)
times, found = [], []
for query in queries:
    begun = time.perf_counter()
    labels, _ = graph.knn_query(query[None, :], k=k, num_threads=1)
    times.append((time.perf_counter() - begun) * 1000)
    found.append(labels[0])
recall = float(np.mean([len(set(f) & set(e)) / k for f, e in zip(found, exact)]))
print(json.dumps({"library": version, "build_seconds": round(build, 1),
                  "p50_ms": round(float(np.percentile(times, 50)), 3),
                  "p95_ms": round(float(np.percentile(times, 95)), 3),
                  "recall_at_k": round(recall, 4)}))
"""


def real_vectors(index_path: Path, data: Path, k: int):
    """An index's live vectors, its dataset's dev questions embedded by the same bundle, and
    each question's exact top ``k`` rows: ``(vectors, texts, queries, exact)``."""
    from lexedge.runtime.datasets import BeirDataset
    from lexedge.runtime.index import Index

    index = Index.load(index_path)
    rows = [r for r in range(len(index.docs)) if r not in index.deleted]
    vectors = index.dense.vectors(rows)
    dataset = BeirDataset(data)
    wanted = set(dataset.qrels("dev"))
    texts = [t for q, t in dataset.queries().items() if q in wanted]
    queries = index.bundle.embedder().encode(texts, kind="query")
    exact = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]
    return vectors, texts, queries, exact


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DATA / "stard")
    parser.add_argument("--python", action="append", required=True, metavar="NAME=PYTHON")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--graph", action="append", metavar="M,EF_CONSTRUCTION",
                        help="graph parameters to compare (default: lexedge's, 32,200)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--name", default="ann_choice")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    vectors, texts, queries, exact = real_vectors(args.index, args.data, args.k)
    results = []
    with tempfile.TemporaryDirectory() as work:
        paths = [str(Path(work) / name) for name in ("v.npy", "q.npy", "e.npy")]
        for path, array in zip(paths, (vectors, queries, exact)):
            np.save(path, array)
        for spec in args.python:
            name, _, python = spec.partition("=")
            for graph in args.graph or ["32,200"]:
                m, ef_construction = (int(part) for part in graph.split(","))
                out = subprocess.run([python, "-c", WORKER, *paths, str(args.k), str(m),
                                      str(ef_construction)], check=True, capture_output=True,
                                     text=True).stdout
                results.append({"package": name, "m": m, "ef_construction": ef_construction,
                                **json.loads(out.strip().splitlines()[-1])})
                print(results[-1], flush=True)
    report = {"cpu": cpu_model(), "flags": _cpu_flags(), "cores": os.cpu_count(),
              "vectors": len(vectors), "dimension": int(vectors.shape[1]),
              "queries": len(texts), "k": args.k, "rows": results}
    lines = [
        "# HNSW graph parameters (one run)" if args.graph else
        "# HNSW package: chroma-hnswlib beside hnswlib 0.8 (one run)", "",
        f"CPU: {report['cpu']} ({report['flags']}), {report['cores']} cores. Vectors: the "
        f"**full** STARD corpus as indexed ({len(vectors):,} x {vectors.shape[1]}, index "
        f"`{args.index.name}`), {len(texts)} dev questions embedded by the same bundle. "
        f"lexedge builds with M 32, ef_construction 200, one thread, seed 0, and searches with "
        f"ef = 2K at K = {args.k}; recall against exact inner-product search.", "",
        "| package | version | M | ef_construction | build s | p50 ms | p95 ms | recall@100 |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| {r['package']} | {r['library']} | {r['m']} | {r['ef_construction']} | "
          f"{r['build_seconds']} | {r['p50_ms']} | {r['p95_ms']} | {r['recall_at_k']} |"
          for r in results], "",
        *([] if args.graph else [
            "The two packages write different graph files (neither reads the other's): an "
            "index built before the switch is refused with the command that rebuilds it.", ""]),
        "Reproduce: see the docstring of `bench/ann_choice.py`.",
    ]
    write_report(args.out, args.name, report, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
