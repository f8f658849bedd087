"""Whether onnxruntime's threads should spin between runs (issue 19): the served search on a
**full** index, its dev questions, with re-ranking off and with the top 20 re-ranked, once
with ``session.intra_op.allow_spinning`` 1 (onnxruntime's default) and once with 0 (lexedge's
``ALLOW_SPINNING``), each in a process of its own, one after the other in one run.

    lexedge index build --docs ../shared/data/stard/corpus.jsonl --bundle builtin --out work-out/idx_stard
    python bench/session_spinning.py --index work-out/idx_stard

Writes ``bench/results/NAME.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from compute_bound import _cpu_flags
from lock_fsync_cost import cpu_model
from report import write_report

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"

TIMING = """
import json, sys
import numpy as np
from lexedge.runtime import onnx_models
onnx_models.ALLOW_SPINNING = sys.argv[2]
from lexedge.runtime.searcher import Searcher
queries = json.loads(sys.argv[3])
searcher = Searcher(sys.argv[1])
rows = {}
for rerank in (0, 20):
    searcher.search(queries[0], rerank=rerank)
    stages = [searcher.search(query, rerank=rerank).timings_ms for query in queries]
    rows[rerank] = {stage: {"p50_ms": float(np.percentile([t.get(stage, 0) for t in stages], 50)),
                            "p95_ms": float(np.percentile([t.get(stage, 0) for t in stages], 95))}
                    for stage in stages[0]}
print(json.dumps(rows))
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, required=True, help="a full index (built-in)")
    parser.add_argument("--data", type=Path, default=DATA / "stard")
    parser.add_argument("--name", default="session_spinning")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lexedge.runtime.datasets import load_qrels, load_queries

    queries = load_queries(args.data / "queries.jsonl")
    dev = [queries[q] for q in load_qrels(args.data / "qrels" / "dev.tsv")]
    results = {"cpu": cpu_model(), "flags": _cpu_flags(), "cores": os.cpu_count(),
               "dataset": args.data.name, "queries": len(dev), "spinning": {}}
    for spinning in ("1", "0"):
        out = subprocess.run([sys.executable, "-c", TIMING, str(args.index), spinning,
                              json.dumps(dev, ensure_ascii=False)],
                             check=True, capture_output=True, text=True).stdout
        results["spinning"][spinning] = json.loads(out.strip().splitlines()[-1])
    lines = ["# onnxruntime threads spinning or not between a search's runs", "",
             f"CPU: {results['cpu']} ({results['flags']}), {results['cores']} cores. The "
             f"**full** {args.data.name} index, {len(dev)} dev questions through "
             "`Searcher.search` (K = 100), each setting in a process of its own, one after "
             "the other.", "",
             "| allow_spinning | re-ranked | dense p50 / p95 ms | rerank p50 / p95 ms | "
             "total p50 / p95 ms |", "|---|---|---|---|---|"]
    for spinning, rows in results["spinning"].items():
        for rerank, stages in rows.items():
            cell = lambda stage: (f"{stages[stage]['p50_ms']:.1f} / {stages[stage]['p95_ms']:.1f}"  # noqa: E731
                                  if stage in stages else "–")
            lines.append(f"| {spinning} | {rerank} | {cell('dense')} | {cell('rerank')} | "
                         f"{cell('total')} |")
    lines += ["", f"Reproduce: `python bench/session_spinning.py --index INDEX` (the commands "
              "in its docstring)."]
    write_report(args.out, args.name, results, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
