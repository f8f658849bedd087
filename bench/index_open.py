"""A cold search's index opening (issue 19, cold ``lexedge search`` within 1 s): every file of a
**full** index hashed before it is read (the order before) against hashed on a second thread
while it is read (``Index.load`` now), each a fresh process doing what ``lexedge search`` does
(import, open the index, make the searcher's models, answer one query), the two alternating
in one run.

    lexedge index build --docs ../shared/data/stard/corpus.jsonl --bundle builtin --out work-out/idx_stard
    python bench/index_open.py --index work-out/idx_stard

Writes ``bench/results/NAME.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from compute_bound import _cpu_flags
from lock_fsync_cost import cpu_model
from report import write_report

HERE = Path(__file__).resolve().parent

PROCESS = """
import json, sys, time
started = time.perf_counter()
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
    index = ix.Index.load(path)
opened = time.perf_counter()
searcher = Searcher(index)
models = time.perf_counter()
searcher.search(sys.argv[3])
answered = time.perf_counter()
print(json.dumps({"import_s": imported - started, "open_s": opened - imported,
                  "models_s": models - opened, "search_s": answered - models,
                  "total_s": answered - started}))
"""
ORDERS = ("hashed first", "hashed while read")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--query", default="劳动合同解除的经济补偿")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--name", default="index_open")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    environment = dict(os.environ, HF_HUB_OFFLINE="1")
    runs = {order: [] for order in ORDERS}
    for _ in range(args.rounds):
        for order in ORDERS:
            done = subprocess.run([sys.executable, "-c", PROCESS, order, str(args.index),
                                   args.query], check=True, capture_output=True, text=True,
                                  env=environment)
            runs[order].append(json.loads(done.stdout))
    medians = {order: {key: round(float(np.median([run[key] for run in rows])), 3)
                       for key in rows[0]} for order, rows in runs.items()}
    size = sum(p.stat().st_size for p in args.index.rglob("*") if p.is_file())
    results = {"cpu": cpu_model(), "flags": _cpu_flags(), "cores": os.cpu_count(),
               "index_bytes": size, "rounds": args.rounds, "medians": medians, "runs": runs}
    lines = ["# Opening an index for a cold search: hashed first, or hashed while read", "",
             f"CPU: {results['cpu']} ({results['flags']}), {results['cores']} cores. Index: "
             f"the one given ({size / 1e6:.0f} MB; the headline is the **full** STARD index). "
             f"Fresh processes, the two orders alternating, {args.rounds} rounds; medians in "
             "seconds.", "", "| order | import | open the index | make the models | "
             "answer | total |", "|---|---|---|---|---|---|"]
    for order, row in medians.items():
        lines.append(f"| {order} | {row['import_s']:.3f} | {row['open_s']:.3f} | "
                     f"{row['models_s']:.3f} | {row['search_s']:.3f} | {row['total_s']:.3f} |")
    lines += ["", "Reproduce: the commands in `bench/index_open.py`'s docstring."]
    write_report(args.out, args.name, results, lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
