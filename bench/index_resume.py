"""A killed index build resumes (issue #6): build a corpus once uninterrupted, then build it
again, SIGKILL the build once it has saved ``--kill-after`` embedded chunks, and run the same
command a second time. Reports, from this one run: documents embedded vs resumed, wall time
of the resumed build as a ratio of the uninterrupted one, leftovers beside the index, and
whether the resumed index holds the same vectors and ranks as the uninterrupted one.

    python bench/index_resume.py --bundle B [--docs ../shared/data/stard/corpus.jsonl]
        [--documents 3000] [--kill-after 2]

Writes ``bench/results/index_resume.{json,md}``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from report import write_json_result, write_markdown_result

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def build_command(docs: Path, bundle: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "lexedge", "index", "build", "--docs", str(docs),
            "--bundle", str(bundle), "--out", str(out)]


def timed_build(docs: Path, bundle: Path, out: Path) -> float:
    started = time.perf_counter()
    subprocess.run(build_command(docs, bundle, out), check=True, capture_output=True)
    return time.perf_counter() - started


def killed_build(docs: Path, bundle: Path, out: Path, chunks: int) -> float:
    """Start a build and SIGKILL it once ``chunks`` embedded chunks are saved."""
    saved = out.with_name(f".{out.name}.embeddings")
    started = time.perf_counter()
    process = subprocess.Popen(build_command(docs, bundle, out), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    while len(list(saved.glob("*.npy"))) < chunks:
        if process.poll() is not None:
            raise SystemExit("the build finished before it could be killed: use more "
                             "--documents or a smaller --kill-after")
        time.sleep(0.5)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return time.perf_counter() - started


def compare(full: Path, resumed: Path, queries: list[str]) -> dict:
    from lexedge.runtime.index import Index
    from lexedge.runtime.searcher import Searcher

    a, b = Index.load(full), Index.load(resumed)
    rows = list(range(len(a)))
    difference = np.abs(a.dense.vectors(rows) - b.dense.vectors(rows)).max()
    same = sum([h.id for h in Searcher(a).search(q, budget=100, rerank=0).hits]
               == [h.id for h in Searcher(b).search(q, budget=100, rerank=0).hits]
               for q in queries)
    return {"max_abs_vector_difference": float(difference), "queries": len(queries),
            "identical_top10": same, "vectors": b.manifest["vectors"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--docs", type=Path,
                        default=REPO.parent / "shared" / "data" / "stard" / "corpus.jsonl")
    parser.add_argument("--queries", type=Path,
                        default=REPO.parent / "shared" / "data" / "stard" / "queries.jsonl")
    parser.add_argument("--documents", type=int, default=3000)
    parser.add_argument("--kill-after", type=int, default=2, help="saved chunks (1,024 "
                        "documents each) before the kill")
    parser.add_argument("--work", type=Path, default=REPO / "work-out" / "index_resume")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    corpus = args.work / "corpus.jsonl"
    with args.docs.open(encoding="utf-8") as source:
        corpus.write_text("".join(itertools.islice(source, args.documents)), encoding="utf-8")
    full_seconds = timed_build(corpus, args.bundle, args.work / "full")
    killed_seconds = killed_build(corpus, args.bundle, args.work / "idx", args.kill_after)
    resumed_seconds = timed_build(corpus, args.bundle, args.work / "idx")
    leftovers = sorted(p.name for p in args.work.iterdir() if p.name.startswith(".idx"))
    with args.queries.open(encoding="utf-8") as handle:
        queries = [json.loads(line)["text"] for line in itertools.islice(handle, 50)]
    result = {"documents": args.documents, "kill_after_chunks": args.kill_after,
              "seconds": {"uninterrupted": full_seconds, "killed_after": killed_seconds,
                          "resumed": resumed_seconds},
              "resumed_over_uninterrupted": resumed_seconds / full_seconds,
              "leftovers_after_resume": leftovers,
              **compare(args.work / "full", args.work / "idx", queries),
              "command": f"python bench/index_resume.py --bundle B --documents "
                         f"{args.documents} --kill-after {args.kill_after}"}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_result(args.out / "index_resume.json", result)
    vectors = result["vectors"]
    markdown = "\n".join([
        "# A killed index build resumes", "",
        f"{args.documents:,} STARD articles, INT8 bundle `{args.bundle}`, one run: an "
        f"uninterrupted build, then a build SIGKILLed after {args.kill_after} saved chunks "
        f"({killed_seconds:.0f} s in), then the same command again.", "",
        "| | value |", "|---|---|",
        f"| uninterrupted build | {full_seconds:.1f} s |",
        f"| resumed build | {resumed_seconds:.1f} s "
        f"(**{result['resumed_over_uninterrupted']:.2f}×** the uninterrupted one) |",
        f"| documents embedded / resumed | {vectors['embedded']:,} / {vectors['resumed']:,} |",
        f"| leftovers beside the index | {', '.join(leftovers) or 'none'} |",
        f"| max difference of the vectors | {result['max_abs_vector_difference']:.1e} |",
        f"| identical top-10 (dense + BM25, K = 100) | {result['identical_top10']} of "
        f"{result['queries']} queries |", "",
        f"Reproduce: `{result['command']}`.", ""])
    write_markdown_result(args.out / "index_resume.md", markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
