"""Re-ranking from passage states stored at index time, as ``lexedge search`` serves it
(issue 19, item 3: "cached lower-layer passage states computed at index time, as in PreTTR,
with their disk cost measured"). An index built with ``lexedge index build --bundle builtin
--passage-states`` holds every passage's late-interaction states as ColBERTv2's 2-bit
residuals (``lexedge.runtime.passage_states``). Over a **full** index's dev questions, in
one process, each question taken both ways in turn (the order alternating), K = 100, the top
20 re-ranked:

- ``live``: the reranker's graph runs over the 20 passages' text (an index without states);
- ``stored``: it runs over the query alone, MaxSim over the stored states.

Quality (R@10, MRR@10, nDCG@10 of the served order), p50 / p95 of the re-ranking stage and of
the whole search, what the states cost to build (from the index manifest) and on disk. With
``--plain DATASET=DIR`` (the same corpus built without states), what adding 2 articles costs
each index (a copy of it, in a temporary folder beside it).

    lexedge index build --docs ../shared/data/ja_appi/corpus.jsonl --bundle builtin \\
        --passage-states --out work-out/idx_ja_states
    python bench/passage_states.py --index ja_appi=work-out/idx_ja_states \\
        --index stard=work-out/idx_stard_states --plain ja_appi=work-out/idx_ja

Writes ``bench/results/NAME.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from compute_bound import _cpu_flags
from lock_fsync_cost import cpu_model
from report import write_report

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
RERANK = 20
WAYS = ("live", "stored")


def _percentiles(values: list[float]) -> dict:
    return {f"p{q}_ms": round(float(np.percentile(values, q)), 1) for q in (50, 95)}


def measure(index: Path, data: Path, passes: int) -> dict:
    from lexedge.runtime.datasets import load_qrels, load_queries
    from lexedge.runtime.metrics import mrr_at_k, ndcg_at_k, recall_at_k
    from lexedge.runtime.searcher import Searcher

    searcher = Searcher(index)
    states = searcher.stored_states
    if states is None:
        raise SystemExit(f"{index}: holds no passage states of its bundle's reranker; build "
                         "it with --passage-states")
    queries = load_queries(data / "queries.jsonl")
    dev = load_qrels(data / "qrels" / "dev.tsv", queries)
    searcher.search(queries[next(iter(dev))], rerank=RERANK)  # sessions made
    rerank_ms = {way: [] for way in WAYS}
    total_ms = {way: [] for way in WAYS}
    quality = {way: {"recall@10": [], "mrr@10": [], "ndcg@10": []} for way in WAYS}
    same = 0
    for pass_ in range(passes):
        for number, query_id in enumerate(dev):
            order = WAYS if (number + pass_) % 2 == 0 else WAYS[::-1]
            ranked = {}
            for way in order:
                searcher.stored_states = states if way == "stored" else None
                result = searcher.search(queries[query_id], rerank=RERANK)
                assert result.settings["rerank_states"] == way
                rerank_ms[way].append(result.timings_ms["rerank"])
                total_ms[way].append(result.timings_ms["total"])
                ranked[way] = [hit.id for hit in result.hits]
            if pass_ == 0:
                same += ranked["live"] == ranked["stored"]
                for way in WAYS:
                    relevant = dev[query_id]
                    quality[way]["recall@10"].append(recall_at_k(ranked[way], relevant, 10))
                    quality[way]["mrr@10"].append(mrr_at_k(ranked[way], relevant, 10))
                    quality[way]["ndcg@10"].append(ndcg_at_k(ranked[way], relevant, 10))
    manifest = searcher.index.manifest
    on_disk = {path.name: path.stat().st_size for path in (Path(index) / "states").iterdir()}
    rest = sum(path.stat().st_size for path in Path(index).rglob("*")
               if path.is_file() and "states" not in path.relative_to(index).parts)
    return {"queries": len(dev), "documents": manifest["documents"],
            "analyzer": searcher.index.analyzer.name,
            "states": dict(manifest["passage_states"], stored_tokens=int(states.offsets[-1])),
            "build_seconds": manifest["build_seconds"], "states_files": on_disk,
            "index_bytes_without_states": rest, "same_top10": same,
            **{way: {"rerank": _percentiles(rerank_ms[way]),
                     "search": _percentiles(total_ms[way]),
                     **{name: round(float(np.mean(values)), 4)
                        for name, values in quality[way].items()}} for way in WAYS}}


def change_cost(indexes: dict[str, Path]) -> dict:
    """Seconds to add 2 new articles to a copy of each index (``Index.add``: states are
    computed for them and the index is rewritten)."""
    from lexedge.runtime.index import Index

    new = [{"id": f"bench-new-{n}", "title": "個人情報の保護に関する法律 第二十七条の二",
            "text": "個人情報取扱事業者は、本人の同意を得ないで個人データを第三者に提供したとき"
                    "は、その旨を記録しなければならない。" * (n + 1)} for n in range(2)]
    seconds = {}
    for way, index in indexes.items():
        with tempfile.TemporaryDirectory(dir=Path(index).parent) as scratch:
            copy = Path(scratch) / "index"
            shutil.copytree(index, copy)
            opened = Index.load(copy)
            started = time.perf_counter()
            opened.add(new)
            seconds[way] = round(time.perf_counter() - started, 2)
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", action="append", required=True, metavar="DATASET=DIR",
                        help="a full index built with --bundle builtin --passage-states")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--plain", action="append", default=[], metavar="DATASET=DIR",
                        help="the same corpus indexed without states: compare adding to it")
    parser.add_argument("--name", default="passage_states")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    datasets = {}
    for spec in args.index:
        name, _, path = spec.partition("=")
        datasets[name] = measure(Path(path), args.data / name, args.passes)
    for spec in args.plain:
        name, _, path = spec.partition("=")
        states = next(spec.partition("=")[2] for spec in args.index
                      if spec.partition("=")[0] == name)
        datasets[name]["add_2_seconds"] = change_cost({"plain": Path(path),
                                                       "stored": Path(states)})
    results = {"cpu": cpu_model(), "flags": _cpu_flags(), "cores": os.cpu_count(),
               "passes": args.passes, "rerank": RERANK, "datasets": datasets}
    lines = ["# Re-ranking from passage states stored at index time, as `lexedge search` "
             "serves it", "",
             f"CPU: {results['cpu']} ({results['flags']}), {results['cores']} cores. Each "
             "dataset's **full** corpus and dev questions, the built-in bundle, K = 100, the "
             f"top {RERANK} re-ranked; both ways in one process, each question by each in "
             f"turn, {args.passes} passes (quality from the first).", "",
             "| dataset | way | R@10 | MRR@10 | nDCG@10 | re-ranking p50 / p95 ms | "
             "search p50 / p95 ms |", "|---|---|---|---|---|---|---|"]
    for name, row in datasets.items():
        for way in WAYS:
            cells = row[way]
            lines.append(f"| {name} ({row['queries']} q) | {way} | {cells['recall@10']:.4f} | "
                         f"{cells['mrr@10']:.4f} | {cells['ndcg@10']:.4f} | "
                         f"{cells['rerank']['p50_ms']} / {cells['rerank']['p95_ms']} | "
                         f"{cells['search']['p50_ms']} / {cells['search']['p95_ms']} |")
    lines += ["", "| dataset | same top 10 | tokens stored (cap) | centroids, bits | states "
              "on disk | the rest of the index | whole build s | states s (fit) |",
              "|---|---|---|---|---|---|---|---|"]
    for name, row in datasets.items():
        states = row["states"]
        lines.append(f"| {name} | {row['same_top10']} / {row['queries']} | "
                     f"{states['stored_tokens']:,} ({states['tokens']}) | "
                     f"{states['centroids']:,}, {states['bits']} | "
                     f"{states['bytes'] / 1e6:,.1f} MB | "
                     f"{row['index_bytes_without_states'] / 1e6:,.1f} MB | "
                     f"{row['build_seconds']} | {states['seconds']} ({states['fit_seconds']}) |")
    for name, row in datasets.items():
        if "add_2_seconds" in row:
            cost = row["add_2_seconds"]
            lines += ["", f"Adding 2 articles to {name}: {cost['plain']} s without states, "
                      f"{cost['stored']} s with them (each a copy of the index)."]
    lines += ["", "Reproduce: the commands in `bench/passage_states.py`'s docstring."]
    write_report(args.out, args.name, results, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
