"""How lexedge runs its ONNX models on the CPU, side by side in one run (the CPU's model and
flags printed):

1. Why the export leaves each residual ``Add`` and its ``LayerNormalization`` apart:
   onnxruntime's CPU kernel for the fused ``SkipLayerNormalization`` against the same arithmetic
   as ``Add`` + ``Add`` + ``LayerNormalization``, alone in a graph.
2. Whole bundles exported both ways (fused as before, apart as now), each encoding the same
   articles two ways: one session spreading every batch over all cores (as before), and one
   worker per core running whole batches on a one-thread session (as an index build does now,
   ``lexedge.runtime.onnx_models.BULK_BATCHES``).

    mkdir -p work-out/builtin-fused   # the built-in as exported before, from git
    for f in $(git ls-tree --name-only 450eb87 runtime/builtin/); do \\
        git show 450eb87:$f > work-out/builtin-fused/$(basename $f); done
    lexedge export --int8 --embedder default --out work-out/e5-int8-apart
    python bench/cpu_encoding.py \\
        --bundle "e5-small INT8, fused=work-out/e5-int8" \\
        --bundle "e5-small INT8, apart=work-out/e5-int8-apart" \\
        --bundle "built-in, fused=work-out/builtin-fused" \\
        --bundle "built-in, apart=builtin"

(``work-out/e5-int8`` is an e5-small export made before this change.) Every file is loaded
through the runtime as it is now (``SkipLayerNormFusion`` off on the CPU), so a fused file runs
as it did. Writes ``bench/results/<name>.{json,md}`` (``cpu_encoding`` by default).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from builtin_speed import article_sample, throughput
from compute_bound import _cpu_flags
from lock_fsync_cost import cpu_model
from report import write_report

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
WIDTH = 384
# how each bundle runs: the embedder's ``workers`` (None: its default, a worker per core)
MODES = {"one session, all cores": 1, "a worker per core": None}

def layer_norm_graph(fused: bool) -> bytes:
    """A one-node graph: ``SkipLayerNormalization`` (com.microsoft) over input, skip and bias,
    or the same as two ``Add`` and a ``LayerNormalization``."""
    from onnx import TensorProto, helper

    def tensor(name, value):
        return helper.make_tensor(name, TensorProto.FLOAT, [WIDTH],
                                  np.full(WIDTH, value, np.float32))

    shape = [None, None, WIDTH]
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
              for name in ("x", "skip")]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    if fused:
        nodes = [helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma", "beta", "bias"],
                                  ["y"], domain="com.microsoft", epsilon=1e-12)]
    else:
        nodes = [helper.make_node("Add", ["x", "skip"], ["sum"]),
                 helper.make_node("Add", ["sum", "bias"], ["biased"]),
                 helper.make_node("LayerNormalization", ["biased", "gamma", "beta"], ["y"],
                                  axis=-1, epsilon=1e-12)]
    graph = helper.make_graph(nodes, "layer_norm", inputs, [output],
                              [tensor("gamma", 1.0), tensor("beta", 0.0), tensor("bias", 0.1)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    return model.SerializeToString()


def operator_times(lengths: list[int], batch: int, threads: list[int],
                   repeats: int = 1000) -> list[dict]:
    """Microseconds per call of each form, median of 5 timings of ``repeats`` calls, graph
    optimisation off (so neither form is rewritten)."""
    import onnxruntime as ort

    rows = []
    rng = np.random.default_rng(0)
    for count in threads:
        options = ort.SessionOptions()
        options.intra_op_num_threads = count
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sessions = {form: ort.InferenceSession(layer_norm_graph(form == "fused"), options,
                                               providers=["CPUExecutionProvider"])
                    for form in ("fused", "apart")}
        for length in lengths:
            feeds = {name: rng.standard_normal((batch, length, WIDTH)).astype(np.float32)
                     for name in ("x", "skip")}
            outputs = {form: session.run(None, feeds)[0] for form, session in sessions.items()}
            row = {"threads": count, "shape": [batch, length, WIDTH],
                   "max_abs_diff": float(np.abs(outputs["fused"] - outputs["apart"]).max())}
            for form, session in sessions.items():
                timings = []
                for _ in range(5):
                    started = time.perf_counter()
                    for _ in range(repeats):
                        session.run(None, feeds)
                    timings.append((time.perf_counter() - started) / repeats * 1e6)
                row[f"{form}_us"] = round(float(np.median(timings)), 1)
            rows.append(row)
    return rows


def encoding_rates(bundles: dict, texts: list[str], rounds: int) -> dict:
    """Articles/s of each bundle in each mode (:data:`MODES`), median of ``rounds``, measured
    by :func:`builtin_speed.throughput` (a process of its own each time, rounds alternating)."""
    runs = {f"{name} / {mode}": path for name, path in bundles.items() for mode in MODES}
    one_session = {f"{name} / {mode}": workers for name in bundles
                   for mode, workers in MODES.items() if workers is not None}
    rates = throughput(runs, texts, rounds, workers=one_session)
    return {name: {mode: rates[f"{name} / {mode}"] for mode in MODES} for name in bundles}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", action="append", default=[], metavar="NAME=PATH",
                        help="a bundle to encode with (repeat; compared in the order given)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--articles", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--name", default="cpu_encoding")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    import lexedge.runtime  # noqa: F401  (sets ORT_DISABLE_TELEMETRY before onnxruntime loads)
    from lexedge.runtime.datasets import BeirDataset

    bundles = dict(spec.split("=", 1) for spec in args.bundle)
    operators = operator_times([32, 76, 144, 256], 4, [1, os.cpu_count() or 1])
    speed = {}
    if bundles:
        documents = [doc.indexed_text for doc in BeirDataset(args.data / "stard").corpus()]
        speed = encoding_rates(bundles, article_sample(documents, args.articles), args.rounds)
    results = {"cpu": cpu_model(), "flags": _cpu_flags(), "cores": os.cpu_count(),
               "operators": operators, "articles": args.articles, "rounds": args.rounds,
               "bundles": bundles, "articles_per_s": speed}
    lines = [f"# SkipLayerNormalization against Add + LayerNormalization ({cpu_model()}, "
             f"{_cpu_flags()}, {os.cpu_count()} cores)", "",
             "One layer norm after a residual add, as every BERT layer has two, alone in a "
             "graph (graph optimisation off), float32, microseconds per call (median of 5 "
             "timings of 1,000 calls):", "",
             "| threads | shape | SkipLayerNormalization | Add + Add + LayerNormalization "
             "| fused / apart | max abs diff |", "|---|---|---|---|---|---|"]
    for row in operators:
        lines.append(f"| {row['threads']} | {row['shape']} | {row['fused_us']} | "
                     f"{row['apart_us']} | {row['fused_us'] / row['apart_us']:.1f}x | "
                     f"{row['max_abs_diff']:.1e} |")
    if speed:
        modes = list(MODES)
        first = speed[next(iter(speed))][modes[0]]
        lines += ["", f"Whole bundles, passage encoding of {args.articles:,} random **full** "
                  f"STARD articles, articles/s (median of {args.rounds} rounds, each "
                  "measurement in a process of its own, rounds alternating), and each cell "
                  "against the first row's first cell:", "",
                  f"| bundle | {' | '.join(modes)} |", "|---|" + "---|" * len(modes)]
        lines += [f"| {name} | " + " | ".join(f"{rates[mode]} ({rates[mode] / first:.2f}x)"
                                             for mode in modes) + " |"
                  for name, rates in speed.items()]
    write_report(args.out, args.name, results, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
