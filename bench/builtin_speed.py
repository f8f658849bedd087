"""The built-in bundle against the zero-shot multilingual-e5-small INT8 bundle, side by side in
one run (issue 19, "what it must show"): passage-encoding throughput on the same STARD
articles, then, on a **full** STARD index built with the built-in bundle, search latency
(p50/p95 over the dev questions, K = 100, with and without re-ranking when the bundle has a
reranker), the search process's peak memory, and a cold ``lexedge search``.

    lexedge export --int8 --embedder default --out work-out/e5-int8-apart
    lexedge index build --docs ../shared/data/stard/corpus.jsonl --bundle builtin \\
        --out work-out/apart_idx
    python bench/builtin_speed.py --baseline work-out/e5-int8-apart \\
        --index work-out/apart_idx --build-rounds 3

(The baseline is exported by the same lexedge: an export from before the residual layer
norms were left apart, ``bench/cpu_encoding.py``, runs about 1.25x slower.)

The side-by-side build over the **full** STARD corpus (about 17 min on 2 cores; whole
builds move by tens of seconds between runs here, hence three rounds):

    python bench/builtin_speed.py --baseline work-out/e5-int8-apart \\
        --index work-out/apart_idx --build-articles 58513 \\
        --build-rounds 3 --name builtin_speed_full

Writes ``bench/results/<name>.{json,md}`` (``builtin_speed`` by default).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from compute_bound import _cpu_flags
from lock_fsync_cost import cpu_model
from report import write_report

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"

SEARCHING = """
import json, sys, time
import numpy as np
from lexedge.runtime.searcher import Searcher
index, rerank, queries = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
started = time.perf_counter()
searcher = Searcher(index)
loaded = time.perf_counter() - started
searcher.search(queries[0], budget=100, rerank=rerank)
times = []
for query in queries:
    started = time.perf_counter()
    searcher.search(query, budget=100, rerank=rerank)
    times.append((time.perf_counter() - started) * 1000)
hwm = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
print(json.dumps({"load_s": loaded, "p50_ms": float(np.percentile(times, 50)),
                  "p95_ms": float(np.percentile(times, 95)), "mean_ms": float(np.mean(times)),
                  "peak_rss_mb": hwm, "queries": len(times)}))
"""


ENCODING = """
import json, sys, time
from lexedge.runtime.bundle import Bundle
texts = json.loads(open(sys.argv[2], encoding="utf-8").read())
settings = json.loads(sys.argv[3])
size = {"batch_size": settings["batch_size"]} if "batch_size" in settings else {}
embedder = Bundle.load(sys.argv[1]).embedder()
embedder.workers = settings.get("workers", embedder.workers)
embedder.encode(texts[:8], **size)
started = time.perf_counter()
embedder.encode(texts, **size)
print(len(texts) / (time.perf_counter() - started))
"""


def throughput(bundles: dict, texts: list[str], rounds: int = 3,
               batch_sizes: dict | None = None, workers: dict | None = None) -> dict:
    """Articles/s of each bundle's embedder on ``texts`` (median of ``rounds``), each time in a
    process of its own with that one model loaded, as an index build has it, rounds
    alternating between the bundles; ``batch_sizes`` (name: texts per batch) and ``workers``
    (name: the embedder's ``workers``, 1 for one session spreading each batch over every
    core) override the encoder's defaults for the bundles they name. Several models loaded
    in one process slowed the small one by up to a fifth (their onnxruntime thread pools
    compete), which no user sees."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        sample = Path(folder) / "texts.json"
        sample.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
        rates = {name: [] for name in bundles}
        for _ in range(rounds):
            for name, path in bundles.items():
                settings = {key: chosen[name] for key, chosen in (("batch_size", batch_sizes),
                                                                  ("workers", workers))
                            if name in (chosen or {})}
                out = subprocess.run([sys.executable, "-c", ENCODING, str(path), str(sample),
                                      json.dumps(settings)], check=True, capture_output=True,
                                     text=True).stdout
                rates[name].append(float(out.strip().splitlines()[-1]))
    return {name: round(float(np.median(found)), 1) for name, found in rates.items()}


def index_builds(bundles: dict, corpus: Path, count: int, rounds: int = 2) -> dict:
    """Seconds of ``lexedge index build`` (a new process: load, BM25, embedding, writing) over
    the first ``count`` articles of ``corpus`` with each bundle, rounds alternating; median.
    The articles/s of a whole build, as a user meets it."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        docs = Path(folder) / "corpus.jsonl"
        with corpus.open(encoding="utf-8") as source:
            docs.write_text("".join(line for _, line in zip(range(count), source)),
                            encoding="utf-8")
        seconds = {name: [] for name in bundles}
        for round_ in range(rounds):
            for name, path in bundles.items():
                out = Path(folder) / f"index-{round_}-{list(bundles).index(name)}"
                started = time.perf_counter()
                subprocess.run([sys.executable, "-m", "lexedge", "index", "build", "--docs",
                                str(docs), "--out", str(out), "--bundle", str(path)],
                               check=True, capture_output=True)
                seconds[name].append(time.perf_counter() - started)
    return {name: {"seconds": round(float(np.median(found)), 1),
                   "articles_per_s": round(count / float(np.median(found)), 1),
                   "rounds": [round(value, 1) for value in found]}
            for name, found in seconds.items()}


def searching(index: Path, queries: list[str], rerank: int) -> dict:
    out = subprocess.run([sys.executable, "-c", SEARCHING, str(index), str(rerank),
                          json.dumps(queries, ensure_ascii=False)],
                         check=True, capture_output=True, text=True).stdout
    return {k: round(v, 3) if isinstance(v, float) else v
            for k, v in json.loads(out.strip().splitlines()[-1]).items()}


def cold_search(index: Path, query: str, repeats: int = 3) -> float:
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "lexedge", "search", query, "--index", str(index)],
                       check=True, capture_output=True)
        runs.append(time.perf_counter() - started)
    return round(float(np.median(runs)), 3)


def compared_bundles(parser: argparse.ArgumentParser) -> None:
    """``--baseline`` and ``--bundle``, as each side-by-side speed bench takes them."""
    parser.add_argument("--baseline", type=Path, required=True,
                        help="the zero-shot e5-small INT8 bundle (lexedge export --embedder "
                             "default)")
    parser.add_argument("--bundle", default="builtin")


def article_sample(documents: list[str], count: int, first: bool = False) -> list[str]:
    """``count`` articles, the same in every run: random ones (in corpus order), or the
    corpus's first ones."""
    if first:
        return documents[:count]
    rng = np.random.default_rng(13)
    return [documents[i] for i in sorted(rng.choice(len(documents), count, replace=False))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    compared_bundles(parser)
    parser.add_argument("--index", type=Path, required=True,
                        help="a full STARD index built with --bundle")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--articles", type=int, default=400)
    parser.add_argument("--build-articles", type=int, default=5000,
                        help="articles of the side-by-side index builds")
    parser.add_argument("--build-rounds", type=int, default=2,
                        help="side-by-side builds per bundle (the median is reported)")
    parser.add_argument("--name", default="builtin_speed")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    from lexedge.runtime.bundle import Bundle
    from lexedge.runtime.datasets import BeirDataset

    dataset = BeirDataset(args.data / "stard")
    documents = [doc.indexed_text for doc in dataset.corpus()]
    sample = article_sample(documents, args.articles)
    queries = dataset.queries()
    dev = [queries[q] for q in dataset.qrels("dev", query_ids=queries)]
    bundle = Bundle.load(args.bundle)
    speed = throughput({"e5-small INT8 (zero-shot)": args.baseline, "built-in": args.bundle},
                       sample)
    ratio = speed["built-in"] / speed["e5-small INT8 (zero-shot)"]
    builds = index_builds({"e5-small INT8 (zero-shot)": args.baseline, "built-in": args.bundle},
                          dataset.corpus_path, args.build_articles, args.build_rounds)
    build_ratio = (builds["built-in"]["articles_per_s"]
                   / builds["e5-small INT8 (zero-shot)"]["articles_per_s"])
    latency = {"K=100": searching(args.index, dev, 0)}
    if bundle.has_reranker:
        latency["K=100, top 20 re-ranked"] = searching(args.index, dev, 20)
    cold = cold_search(args.index, dev[0])
    results = {"cpu": cpu_model(), "flags": _cpu_flags(), "cores": os.cpu_count(),
               "articles": args.articles, "throughput": speed, "ratio": round(ratio, 2),
               "build_articles": args.build_articles, "build_rounds": args.build_rounds,
               "builds": builds,
               "build_ratio": round(build_ratio, 2),
               "latency": latency, "cold_search_s": cold,
               "index_documents": json.loads((args.index / "manifest.json").read_text(
                   encoding="utf-8"))["documents"]}
    built = (f"the **full** STARD corpus, {len(documents):,} articles"
             if args.build_articles >= len(documents)
             else f"the first {args.build_articles:,} STARD articles")
    lines = [
        "# Built-in bundle: speed against the zero-shot e5-small INT8 bundle (one run)", "",
        f"CPU: {results['cpu']} ({results['flags']}), {results['cores']} cores.", "",
        f"## Passage encoding ({args.articles} STARD articles, the same for both; each "
        "bundle in a process of its own, rounds alternating, median of 3)", "",
        "| bundle | articles/s |", "|---|---|",
        *[f"| {name} | {value} |" for name, value in speed.items()], "",
        f"Built-in / e5-small: **{ratio:.2f}x**.", "",
        f"## Index build (`lexedge index build`, a new process each: load, BM25, embedding, "
        f"writing; {built}; rounds alternating, "
        f"median of {args.build_rounds})", "",
        "| bundle | seconds | articles/s |", "|---|---|---|",
        *[f"| {name} | {row['seconds']} | {row['articles_per_s']} |"
          for name, row in builds.items()], "",
        f"Built-in / e5-small: **{build_ratio:.2f}x**. Each round (seconds, the two builds "
        "back to back): " + "; ".join(
            f"{slow:.1f} / {fast:.1f} = {slow / fast:.2f}x" for slow, fast in zip(
                builds["e5-small INT8 (zero-shot)"]["rounds"], builds["built-in"]["rounds"])
        ) + ".", "",
        f"## Searching the full STARD index ({results['index_documents']:,} articles, "
        f"{len(dev)} dev questions, one process)", "",
        "| setting | p50 ms | p95 ms | index load s | peak RSS MB |", "|---|---|---|---|---|",
        *[f"| {name} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} | {row['load_s']:.2f} | "
          f"{row['peak_rss_mb']:.0f} |" for name, row in latency.items()], "",
        f"A cold `lexedge search` (a new process: imports, hash checks, index and model "
        f"load, one query): **{cold:.2f} s** (median of 3).", "",
        "Reproduce: see the docstring of `bench/builtin_speed.py`.",
    ]
    write_report(args.out, args.name, results, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
