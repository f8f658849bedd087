"""What showing a hit costs (issue 19, search p95 within 30 ms at K = 100 without re-ranking):
each hit's matched terms, and for Japanese the analysis behind them (MeCab) was most of a
search. Two ways, in one process over a **full** index's dev questions, each question taken
by each way in turn (2 passes), ``lexedge search``'s served path with re-ranking off:

- ``stop 38``: the query analysed by BM25 and once more for the hits, and each shown hit's
  text analysed to find the query terms it holds;
- ``now``: the query analysed once per search, and the terms each hit holds read from the
  BM25 score matrix (``BM25Index.terms_held``: the same terms,
  ``tests/runtime/test_bm25.py``), nothing analysed per hit.

Stop 37's way (the query analysed again for every hit, Japanese terms read from fugashi's
word objects) is in ``docs/results.md``: ja_appi p95 43.1 ms against stop 38's 28.1.

    python bench/hit_terms.py --index ja_appi=work-out/idx_ja --index stard=work-out/idx_stard

Writes ``bench/results/NAME.{json,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

import numpy as np

from compute_bound import _cpu_flags
from lock_fsync_cost import cpu_model
from report import write_report

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
WAYS = ("stop 38", "now")


@contextlib.contextmanager
def the_way_of(searcher, way: str):
    """Patch ``searcher`` back to ``way`` (see the module docstring); ``now`` changes nothing."""
    if way == "now":
        yield
        return
    index = searcher.index
    bm25, analyzer = index.bm25, index.analyzer

    def analysing_again(query, k=10, mask=None, query_terms=None):
        return type(bm25).search(bm25, query, k, mask)

    def analysing_hits(doc_ids, terms):  # every text here is under stop 38's window limit
        return [set(terms) & set(analyzer.tokens(index.document(doc_id).indexed_text))
                for doc_id in doc_ids]

    bm25.search, bm25.terms_held = analysing_again, analysing_hits
    try:
        yield
    finally:
        bm25.__dict__.pop("search", None)
        bm25.__dict__.pop("terms_held", None)


def measure(index: Path, data: Path, passes: int) -> dict:
    from lexedge.runtime.datasets import load_qrels, load_queries
    from lexedge.runtime.searcher import Searcher

    searcher = Searcher(index)
    queries = load_queries(data / "queries.jsonl")
    dev = load_qrels(data / "qrels" / "dev.tsv", queries)
    times = {way: [] for way in WAYS}
    shown = {way: [] for way in WAYS}
    searcher.search(queries[next(iter(dev))], rerank=0)  # sessions made, caches warm
    for pass_ in range(passes):
        for query_id in dev:
            for way in WAYS:
                with the_way_of(searcher, way):
                    result = searcher.search(queries[query_id], rerank=0)
                times[way].append(result.timings_ms["total"])
                if pass_ == 0:
                    shown[way].append([(hit.id, hit.matched_terms, hit.snippet)
                                       for hit in result.hits])
    return {"queries": len(dev), "analyzer": searcher.index.analyzer.name,
            "same_hits": all(shown[way] == shown["now"] for way in WAYS),
            **{way: {f"p{q}_ms": round(float(np.percentile(times[way], q)), 1)
                     for q in (50, 95)} for way in WAYS}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", action="append", required=True, metavar="DATASET=DIR")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--name", default="hit_terms")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    datasets = {}
    for spec in args.index:
        name, _, path = spec.partition("=")
        datasets[name] = measure(Path(path), args.data / name, args.passes)
    results = {"cpu": cpu_model(), "flags": _cpu_flags(), "cores": os.cpu_count(),
               "passes": args.passes, "datasets": datasets}
    lines = ["# Showing a hit: its matched terms analysed (stop 38) or read from the index", "",
             f"CPU: {results['cpu']} ({results['flags']}), {results['cores']} cores. Each "
             "dataset's **full** corpus and dev questions, `lexedge search`'s served path, "
             "K = 100, 10 hits shown, re-ranking off; every way in one process, each question "
             f"by each way in turn, {args.passes} passes. p50 / p95 ms of the search's own "
             "timing.", "",
             "| dataset | analyzer | stop 38 | now | same hits, terms and snippets |",
             "|---|---|---|---|---|"]
    for name, row in datasets.items():
        lines.append(f"| {name} ({row['queries']} q) | {row['analyzer']} | "
                     f"{row['stop 38']['p50_ms']} / {row['stop 38']['p95_ms']} | "
                     f"**{row['now']['p50_ms']} / {row['now']['p95_ms']}** | "
                     f"{'yes' if row['same_hits'] else 'NO'} |")
    lines += ["", "Reproduce: the command in `bench/hit_terms.py`'s docstring."]
    write_report(args.out, args.name, results, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
