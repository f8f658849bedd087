"""What the writer lock and fsync cost (issue 20): build an index of a corpus and apply small
updates to it, with lexedge's durability on (writer lock + fsync of every file and folder
before each rename, as every real run does) and off, alternating the two in one run so both
see the same machine, page cache and disk.

    python bench/lock_fsync_cost.py [--docs ../shared/data/ja_statutes/corpus.jsonl]
        [--rounds 3] [--updates 5]

BM25-only indexes (the dense graph adds one more file to sync, of a size the docs file
already matches). Writes ``bench/results/lock_fsync_cost.{json,md}``.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from compute_bound import _cpu_flags

from report import write_report

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def cpu_model() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in
                    Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def measure(docs: Path, work: Path, durable: bool, updates: int) -> dict:
    from lexedge.runtime import storage
    from lexedge.runtime.datasets import Document
    from lexedge.runtime.index import Index

    storage.FSYNC = storage.LOCKING = durable
    out = work / ("durable" if durable else "off")
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    index = Index.build(docs, out, progress=False)
    build = time.perf_counter() - started
    times = []
    for number in range(updates):
        started = time.perf_counter()
        index = index.add([Document(f"bench-{number}", f"第{number}条 契約の解除に関する規定")])
        times.append(time.perf_counter() - started)
    storage.FSYNC = storage.LOCKING = True
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"build_s": build, "update_s": statistics.median(times), "documents": len(index),
            "bytes": size}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=Path,
                        default=REPO.parent / "shared" / "data" / "ja_statutes" / "corpus.jsonl")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--updates", type=int, default=5, help="single-document adds per round")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    runs = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="lexedge-lock-bench-") as work:
        for round_number in range(args.rounds):
            # alternate which mode goes first, so neither always meets a warm cache
            for durable in ((True, False) if round_number % 2 == 0 else (False, True)):
                runs[durable].append(measure(args.docs, Path(work), durable, args.updates))
                print(f"round {round_number + 1} {'durable' if durable else 'off'}: "
                      f"{runs[durable][-1]}", flush=True)
    summary = {}
    for durable, label in ((True, "lock + fsync"), (False, "neither")):
        summary[label] = {key: statistics.median(r[key] for r in runs[durable])
                          for key in ("build_s", "update_s")}
    on, off = summary["lock + fsync"], summary["neither"]
    results = {
        "corpus": args.docs.parent.name, "documents": runs[True][0]["documents"] - args.updates,
        "index_bytes": runs[True][0]["bytes"], "rounds": args.rounds, "updates": args.updates,
        "cpu": cpu_model(), "flags": _cpu_flags(), "runs": {"lock + fsync": runs[True],
                                                             "neither": runs[False]},
        "summary": summary,
        "overhead": {"build": on["build_s"] / off["build_s"] - 1,
                     "update": on["update_s"] / off["update_s"] - 1},
    }
    lines = [
        f"# Cost of the writer lock and fsync ({results['corpus']}, full corpus, "
        f"{results['documents']:,} documents, BM25 index of {results['index_bytes'] / 1e6:.1f} MB)",
        "",
        f"CPU: {results['cpu']} ({results['flags']}); median of {args.rounds} rounds, the two "
        "modes alternating in one run; update = one added document on the full index, median "
        f"of {args.updates} per round.",
        "",
        "| | build (s) | update (s) |",
        "|---|---|---|",
        *(f"| {label} | {values['build_s']:.2f} | {values['update_s']:.3f} |"
          for label, values in summary.items()),
        f"| overhead | {results['overhead']['build']:+.1%} | "
        f"{results['overhead']['update']:+.1%} |",
        "",
        "Reproduce: `python bench/lock_fsync_cost.py`.",
    ]
    write_report(args.out, "lock_fsync_cost", results, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
