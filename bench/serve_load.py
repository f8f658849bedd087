"""``lexedge serve`` under load (issue 22): queries/s and p50/p95 latency from 1, 4 and 16
concurrent clients against a service on 127.0.0.1, beside the same searches run in-process by
one ``Searcher``, in one run; the service's memory.

    python bench/serve_load.py --index work-out/depths/stard-L3 --data ../shared/data/stard

The service runs as its own process (``lexedge serve``); the clients are threads of this one
using the stdlib client (``lexedge.runtime.client``), each sending the dev questions in turn.
Writes ``bench/results/serve_load.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from compute_bound import _cpu_flags
from lock_fsync_cost import cpu_model
from report import write_report

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def memory_mb(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    field = {line.split(":")[0]: line.split()[1] for line in status.splitlines()
             if line.startswith(("VmRSS", "VmHWM"))}
    return {"rss_mb": round(int(field["VmRSS"]) / 1024, 1),
            "peak_rss_mb": round(int(field["VmHWM"]) / 1024, 1)}


def summary(latencies_ms: list[float], seconds: float) -> dict:
    return {"requests": len(latencies_ms), "queries_per_s": round(len(latencies_ms) / seconds, 1),
            "p50_ms": round(float(np.percentile(latencies_ms, 50)), 2),
            "p95_ms": round(float(np.percentile(latencies_ms, 95)), 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DATA / "stard")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=400, help="per concurrency level")
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lexedge.runtime.client import ServiceClient
    from lexedge.runtime.datasets import BeirDataset
    from lexedge.runtime.searcher import Searcher
    from lexedge.runtime.settings import SearchSettings

    dataset = BeirDataset(args.data)
    wanted = set(dataset.qrels(args.split))
    queries = [text for qid, text in dataset.queries().items() if qid in wanted]
    settings = SearchSettings(budget=args.budget, rerank=0, top=10)

    # in-process: one Searcher, one thread, the same questions
    searcher = Searcher(args.index)
    searcher.search(queries[0], settings)
    latencies, started = [], time.perf_counter()
    for i in range(args.requests):
        begun = time.perf_counter()
        searcher.search(queries[i % len(queries)], settings)
        latencies.append((time.perf_counter() - begun) * 1000)
    rows = [{"clients": "in-process", **summary(latencies, time.perf_counter() - started)}]
    print(rows[-1], flush=True)
    del searcher

    port = free_port()
    service = subprocess.Popen([sys.executable, "-m", "lexedge", "serve", "--index",
                                str(args.index), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        client = ServiceClient(url, timeout=120)
        deadline, loaded = time.monotonic() + 300, time.perf_counter()
        while True:
            try:
                client.info()
                break
            except Exception:  # noqa: BLE001 - not up yet
                if service.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the service did not start: {service.stdout.read()}")
                time.sleep(0.2)
        startup = time.perf_counter() - loaded
        client.search(queries[0], settings)
        for clients in args.clients:
            def one(i):
                begun = time.perf_counter()
                client.search(queries[i % len(queries)], settings)
                return (time.perf_counter() - begun) * 1000
            started = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                latencies = list(pool.map(one, range(args.requests)))
            rows.append({"clients": clients, **summary(latencies,
                                                        time.perf_counter() - started)})
            print(rows[-1], flush=True)
        memory = memory_mb(service.pid)
    finally:
        service.terminate()
        service.wait(30)

    results = {"cpu": cpu_model(), "flags": _cpu_flags(), "cores": os.cpu_count(),
               "index": args.index.name, "documents": None, "split": args.split,
               "queries": len(queries), "budget": args.budget, "startup_s": round(startup, 2),
               **memory, "rows": rows}
    manifest = json.loads((args.index / "manifest.json").read_text(encoding="utf-8"))
    results["documents"] = manifest["documents"]
    lines = [
        "# lexedge serve under load (one run)", "",
        f"CPU: {results['cpu']} ({results['flags']}), {results['cores']} cores; the clients "
        "share the machine with the service. Index: "
        f"`{args.index.name}` ({results['documents']:,} {args.data.name} documents), searches "
        "of its "
        f"{len(queries)} {args.split} questions in turn, budget {args.budget}, no re-ranking, "
        "top 10. Service: `lexedge serve` on 127.0.0.1 (its own process, up in "
        f"{results['startup_s']} s), stdlib HTTP client; in-process: one `Searcher`, one "
        "thread.", "",
        "| clients | requests | queries/s | p50 ms | p95 ms |", "|---|---|---|---|---|",
        *[f"| {r['clients']} | {r['requests']} | {r['queries_per_s']} | {r['p50_ms']} | "
          f"{r['p95_ms']} |" for r in rows], "",
        f"Service memory after the run: RSS {results['rss_mb']} MB, peak "
        f"{results['peak_rss_mb']} MB.", "",
        "Reproduce: see the docstring of `bench/serve_load.py`.",
    ]
    write_report(args.out, "serve_load", results, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
