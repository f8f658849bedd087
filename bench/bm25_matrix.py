"""What building BM25's score matrix costs (issue 19: the index build of the built-in bundle
at 5× e5-small's, which the work both builds share holds back). bm25s builds the matrix
document by document in Python; lexedge now builds the same arrays in one numpy pass
(``lexedge.runtime.bm25._bm25_class``). Two measurements, each way in a fresh process, the
ways alternating:

1. the matrix alone, from a **full** index's stored terms (``bm25/terms.npy``): seconds, and
   whether the two ways give the same arrays bit for bit;
2. with ``--build CORPUS``, a whole ``lexedge index build --bundle builtin`` each way: wall
   and CPU seconds, when the last chunk finished embedding, and the matrix's span.

    lexedge index build --docs ../shared/data/stard/corpus.jsonl --bundle builtin --out work-out/idx_stard
    python bench/bm25_matrix.py --index stard=work-out/idx_stard --index ja_appi=work-out/idx_ja \\
        --build ../shared/data/stard/corpus.jsonl --build-rounds 2

Writes ``bench/results/NAME.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from compute_bound import _cpu_flags
from lock_fsync_cost import cpu_model
from report import write_report

HERE = Path(__file__).resolve().parent
WAYS = ("bm25s", "lexedge")

# Each measurement runs in a child process of its own, so neither way inherits the memory the
# other touched. ``bm25s`` swaps lexedge's class back for bm25s' own.
_CHILD_PRELUDE = r'''
import json, resource, sys, time
import lexedge.runtime.bm25 as bm
if sys.argv[1] == "bm25s":
    import bm25s
    bm._bm25_class = lambda: bm25s.BM25
'''

_MATRIX = _CHILD_PRELUDE + r'''
import hashlib
import numpy as np
folder = sys.argv[2]
terms = np.load(folder + "/terms.npy")
offsets = np.load(folder + "/terms.offsets.npy")
words = json.loads(open(folder + "/terms.vocabulary.json", encoding="utf-8").read())
arrays = [terms[offsets[row]:offsets[row + 1]] for row in range(len(offsets) - 1)]
vocabulary = bm._Vocabulary({word: number for number, word in enumerate(words)})
started = time.perf_counter()
index = bm.BM25Index._from_terms(arrays, vocabulary, [str(r) for r in range(len(arrays))],
                                 bm.get_analyzer("word"), 1.2, 0.75)
seconds = time.perf_counter() - started
digest = hashlib.sha256()
for part in ("data", "indices", "indptr"):
    array = index.retriever.scores[part]
    digest.update(str(array.dtype).encode() + array.tobytes())
print(json.dumps({"seconds": seconds, "sha256": digest.hexdigest(), "terms": int(len(terms)),
                  "documents": len(arrays)}))
'''

_BUILD = _CHILD_PRELUDE + r'''
import lexedge.runtime.embedding_chunks as chunks
from lexedge.runtime.bundle import Bundle
from lexedge.runtime.index import Index
origin, marks = time.perf_counter(), {}
embed = chunks.ChunkEmbedding._embed
def timed_embed(self, chunk):
    vectors = embed(self, chunk)
    marks["last_chunk"] = time.perf_counter() - origin
    return vectors
chunks.ChunkEmbedding._embed = timed_embed
from_terms = bm.BM25Index.__dict__["_from_terms"].__func__
def timed_terms(cls, *args):
    start = time.perf_counter() - origin
    index = from_terms(cls, *args)
    marks["matrix"] = [start, time.perf_counter() - origin]
    return index
bm.BM25Index._from_terms = classmethod(timed_terms)
Index.build(sys.argv[2], sys.argv[3], bundle=Bundle.load("builtin"), progress=False)
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": time.perf_counter() - origin,
                  "cpu_seconds": usage.ru_utime + usage.ru_stime, **marks}))
'''


def _child(code: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"bench child failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def matrix(index: Path, rounds: int) -> dict:
    runs = {way: [] for way in WAYS}
    for _ in range(rounds):
        for way in WAYS:
            runs[way].append(_child(_MATRIX, way, str(index / "bm25")))
    first = runs[WAYS[0]][0]
    return {"documents": first["documents"], "terms": first["terms"],
            "identical": len({run["sha256"] for way in WAYS for run in runs[way]}) == 1,
            **{way: {"seconds": [round(run["seconds"], 2) for run in runs[way]],
                     "median_s": round(statistics.median(r["seconds"] for r in runs[way]), 2)}
               for way in WAYS}}


def builds(corpus: Path, rounds: int) -> dict:
    runs = {way: [] for way in WAYS}
    with tempfile.TemporaryDirectory(prefix="bm25-matrix-") as work:
        for _ in range(rounds):
            for way in WAYS:
                out = Path(work) / way
                shutil.rmtree(out, ignore_errors=True)
                runs[way].append(_child(_BUILD, way, str(corpus), str(out)))
    return {way: {"runs": [{key: value if not isinstance(value, float) else round(value, 1)
                            for key, value in run.items()} | {
                                "matrix": [round(v, 1) for v in run["matrix"]],
                                "after_last_chunk_s": round(run["seconds"] - run["last_chunk"], 1)}
                           for run in runs[way]],
                  "median_s": round(statistics.median(r["seconds"] for r in runs[way]), 1)}
            for way in WAYS}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", action="append", default=[], metavar="DATASET=DIR",
                        help="a full index whose stored terms the matrix is built from")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--build", type=Path, help="a corpus to build with the built-in bundle")
    parser.add_argument("--build-rounds", type=int, default=1)
    parser.add_argument("--name", default="bm25_matrix")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results = {"cpu": cpu_model(), "flags": _cpu_flags(), "cores": os.cpu_count(),
               "rounds": args.rounds, "matrix": {}}
    lines = ["# BM25's score matrix: bm25s' own loop against lexedge's numpy pass", "",
             f"CPU: {results['cpu']} ({results['flags']}), {results['cores']} cores. Each "
             "way in a fresh process, the ways alternating.", "",
             f"## The matrix alone, from a full index's stored terms ({args.rounds} rounds)",
             "", "| dataset | documents | terms | bm25s s (median) | lexedge s (median) | "
             "same arrays |", "|---|---|---|---|---|---|"]
    for spec in args.index:
        name, _, path = spec.partition("=")
        row = results["matrix"][name] = matrix(Path(path), args.rounds)
        lines.append(f"| {name} | {row['documents']:,} | {row['terms']:,} | "
                     f"{row['bm25s']['median_s']} | **{row['lexedge']['median_s']}** | "
                     f"{'bit for bit' if row['identical'] else 'NO'} |")
    if args.build:
        results["build"] = {"corpus": str(args.build), "rounds": args.build_rounds,
                            **builds(args.build, args.build_rounds)}
        lines += ["", f"## A whole built-in build of `{args.build.name}` "
                  f"({args.build_rounds} rounds)", "",
                  "| way | wall s | CPU s | last chunk embedded at s | matrix built s → s | "
                  "after the last chunk s |", "|---|---|---|---|---|---|"]
        for way in WAYS:
            for run in results["build"][way]["runs"]:
                lines.append(f"| {way} | {run['seconds']} | {run['cpu_seconds']} | "
                             f"{run['last_chunk']} | {run['matrix'][0]} → {run['matrix'][1]} "
                             f"| {run['after_last_chunk_s']} |")
    lines += ["", "Reproduce: the commands in `bench/bm25_matrix.py`'s docstring."]
    write_report(args.out, args.name, results, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
