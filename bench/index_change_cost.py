"""What a small change to an index costs (issue 23): adding 2 articles to, and removing 2 from,
the full ja_appi index (12,116 articles, BM25), with each document's terms kept (today) beside
re-analysing every document (before), in one run, and the full build for scale.

    python bench/index_change_cost.py

Writes ``bench/results/index_change_cost.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

from compute_bound import _cpu_flags
from lock_fsync_cost import cpu_model
from report import write_report

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA / "ja_appi")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    from lexedge.runtime.bm25 import BM25Index
    from lexedge.runtime.datasets import Document
    from lexedge.runtime.index import Index

    new = [Document("bench-new-1", "個人情報取扱事業者は、保有個人データを安全に管理しなければならない。",
                    "ベンチ 第一条"),
           Document("bench-new-2", "委託先の監督について必要かつ適切な措置を講じなければならない。",
                    "ベンチ 第二条")]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        started = time.perf_counter()
        base = Index.build(args.data / "corpus.jsonl", Path(work) / "base", progress=False)
        build_seconds = time.perf_counter() - started
        victims = base.bm25.doc_ids[:2]
        for label, keep_terms in (("terms kept (now)", True), ("re-analyse all (before)",
                                                                  False)):
            copy = Path(work) / label.split()[0]
            shutil.copytree(base.path, copy)
            index = Index.load(copy)
            with mock.patch.object(BM25Index, "has_terms",
                                   staticmethod(lambda directory, keep=keep_terms: keep)):
                started = time.perf_counter()
                index = index.add(new)
                add_seconds = time.perf_counter() - started
                started = time.perf_counter()
                index.remove(victims)
                remove_seconds = time.perf_counter() - started
            rows.append({"variant": label, "add_2_seconds": round(add_seconds, 2),
                         "remove_2_seconds": round(remove_seconds, 2)})
            print(rows[-1], flush=True)
    results = {"cpu": cpu_model(), "flags": _cpu_flags(), "cores": os.cpu_count(),
               "documents": len(base), "build_seconds": round(build_seconds, 2), "rows": rows}
    lines = [
        "# The cost of a small index change (one run)", "",
        f"CPU: {results['cpu']} ({results['flags']}), {results['cores']} cores. Index: the "
        f"**full** ja_appi corpus, {len(base):,} articles, BM25 (ja analyzer); full build "
        f"{results['build_seconds']} s.", "",
        "| variant | add 2 articles s | remove 2 articles s |", "|---|---|---|",
        *[f"| {r['variant']} | {r['add_2_seconds']} | {r['remove_2_seconds']} |"
          for r in rows], "",
        "Every change still writes a new index version (copy, rebuild of the BM25 arrays from "
        "terms, fsync, rename: see the data-safety section of the README); what the terms save "
        "is the re-analysis of every kept document.", "",
        "Reproduce: `python bench/index_change_cost.py`.",
    ]
    write_report(args.out, "index_change_cost", results, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
