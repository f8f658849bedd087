"""A cold search's index opening (issue 19, cold ``lexedge search`` within 1 s), four ways, each
a fresh process doing what ``lexedge search`` does (import, open the index, make the
searcher's models, answer one query), alternating in one run over a **full** index:

- ``hashed first``: every file hashed before any is read (stop 36);
- ``hashed while read, 1 thread``: every file hashed on one thread beside the reads (stop 37);
- ``hashed while read, N threads``: the files a search reads hashed on ``VERIFY_THREADS``
  threads beside the reads, the BM25 terms only an update reads left to the update (stop 38);
- ``now``: that, and bm25s imported without the ``scipy.sparse`` it loads for nothing
  (``lexedge.runtime.bm25._import_bm25s``). The three ways before import bm25s as they did,
  scipy and all, where scipy is installed.

``process`` is the whole process as the parent sees it, interpreter start and exit included.
``--python`` times another install's interpreter: a laptop user's ``pip install .`` has no
scipy, which bm25s otherwise imports (0.1 s) as the index opens.

    lexedge index build --docs ../shared/data/stard/corpus.jsonl --bundle builtin --out work-out/idx_stard
    python bench/index_open.py --index work-out/idx_stard
    python3 -m venv work-out/base && work-out/base/bin/pip install .
    python bench/index_open.py --index work-out/idx_stard --python work-out/base/bin/python \
        --name index_open_base

Writes ``bench/results/NAME.{json,md}``.
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

PROCESS = """
import json, sys, time
started = time.perf_counter()
if sys.argv[1] != "now":
    import bm25s  # scipy.sparse too, where installed, as before stop 39
from pathlib import Path
from lexedge.runtime import index as ix
from lexedge.runtime.searcher import Searcher
imported = time.perf_counter()
path = Path(sys.argv[2])
if sys.argv[1] == "hashed first":
    manifest = ix.read_manifest(path, "index", ix.FORMAT_VERSION, "")
    ix._verify_files(ix._checked_file_list(path, manifest))
    index = ix.Index._read_verified(path, manifest, None, ix._identity(path))
else:
    if sys.argv[1] == "hashed while read, 1 thread":
        ix.VERIFY_THREADS, ix.BM25_UPDATE_FILES = 1, ()
    index = ix.Index.load(path)
opened = time.perf_counter()
searcher = Searcher(index)
models = time.perf_counter()
searcher.search(sys.argv[3])
answered = time.perf_counter()
print(json.dumps({"import_s": imported - started, "open_s": opened - imported,
                  "models_s": models - opened, "search_s": answered - models,
                  "total_s": answered - started, "threads": ix.VERIFY_THREADS}))
"""
INSTALL = """
import importlib.util
print(", ".join(f"{name} {'installed' if importlib.util.find_spec(name) else 'absent'}"
                for name in ("torch", "scipy")))
"""
ORDERS = ("hashed first", "hashed while read, 1 thread", "hashed while read, N threads", "now")
COLUMNS = ("import_s", "open_s", "models_s", "search_s", "total_s", "process_s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--query", default="劳动合同解除的经济补偿")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter of the install to time (default: this one)")
    parser.add_argument("--name", default="index_open")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    environment = dict(os.environ, HF_HUB_OFFLINE="1")
    runs = {order: [] for order in ORDERS}
    for _ in range(args.rounds):
        for order in ORDERS:
            started = time.perf_counter()
            done = subprocess.run([args.python, "-c", PROCESS, order, str(args.index),
                                   args.query], check=True, capture_output=True, text=True,
                                  env=environment)
            runs[order].append(dict(json.loads(done.stdout),
                                    process_s=time.perf_counter() - started))
    medians = {order: {key: round(float(np.median([run[key] for run in rows])), 3)
                       for key in COLUMNS} for order, rows in runs.items()}
    size = sum(p.stat().st_size for p in args.index.rglob("*") if p.is_file())
    threads = runs[ORDERS[-1]][0]["threads"]
    install = subprocess.run([args.python, "-c", INSTALL], check=True, capture_output=True,
                             text=True).stdout.strip()
    results = {"cpu": cpu_model(), "flags": _cpu_flags(), "cores": os.cpu_count(),
               "index_bytes": size, "rounds": args.rounds, "hash_threads": threads,
               "install": install,
               "medians": medians, "runs": runs}
    lines = ["# Opening an index for a cold search: when and how its files are hashed", "",
             f"CPU: {results['cpu']} ({results['flags']}), {results['cores']} cores. Index: "
             f"the one given ({size / 1e6:.0f} MB; the headline is the **full** STARD index). "
             f"Fresh processes, the {len(ORDERS)} ways alternating, {args.rounds} rounds; medians in "
             f"seconds. N = {threads} hashing threads here. Install timed: {install}. "
             "`process`: the whole process as its parent timed it, interpreter start and exit "
             "included.", "",
             "| way | import | open the index | make the models | answer | total | process |",
             "|---|---|---|---|---|---|---|"]
    for order, row in medians.items():
        lines.append(f"| {order} | " + " | ".join(f"{row[key]:.3f}" for key in COLUMNS) + " |")
    lines += ["", "Reproduce: the commands in `bench/index_open.py`'s docstring."]
    write_report(args.out, args.name, results, lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
