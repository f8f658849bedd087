"""How far the runtime's speed targets (issue #6) are from what this CPU can do at all.

Counts the arithmetic the bundle's models need (multiply-adds read from the ONNX graph's
weight matrices, plus attention, at the token lengths the real texts have) and, in the same
run, measures

* the machine's peak matrix-multiply rate at the models' own layer shapes: numpy's sgemm,
  onnxruntime FP32 ``MatMul`` and onnxruntime INT8 (``DynamicQuantizeLinear`` +
  ``MatMulInteger``, what ``lexedge export --int8`` produces);
* the rate the bundle's models actually reach (embedding a seeded sample of STARD articles;
  re-ranking 20 seeded random articles per dev query: the arithmetic depends on the pairs'
  token lengths, not on which articles they are),

then gives the time the targets' workloads need: at the peak kernel rate (a lower bound no
implementation of these models can beat on this CPU) and at the models' achieved rate (what
the runtime bench measures). Every number comes from this one run.

    python bench/compute_bound.py --bundle B [--data ../shared/data/stard]

Writes ``bench/results/compute_bound.{json,md}``. Needs the ``[export]`` extra (``onnx``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from report import write_json_result, write_markdown_result

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WEIGHTED_OPS = {"MatMul", "MatMulInteger", "Attention", "QAttention", "Gemm"}
ATTENTION_OPS = {"Attention", "QAttention"}
BUILD_TARGET_MIN = 20.0
RERANK_TARGET_MS = 150.0
RERANK_TOP = 20
KERNEL_REPEATS = 25


def graph_arithmetic(model_path: Path) -> dict:
    """Multiply-adds per token of every weight matrix in the graph, the number of attention
    layers, the hidden width (the attention terms grow with sequence length) and the widest
    weight matrix (the feed-forward layer's)."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    shapes = {init.name: tuple(init.dims) for init in model.graph.initializer}
    per_token, layers, hidden, widest = 0, 0, 0, 0
    for node in model.graph.node:
        if node.op_type not in WEIGHTED_OPS:
            continue
        weights = [shapes[name] for name in node.input if len(shapes.get(name, ())) == 2]
        if not weights:
            continue  # activation x activation (attention scores in an unfused graph)
        rows, cols = weights[0]
        per_token += rows * cols
        widest = max(widest, cols)
        if node.op_type in ATTENTION_OPS:
            layers += 1
            hidden = rows
    return {"macs_per_token": per_token, "attention_layers": layers, "hidden": hidden,
            "widest": widest}


def sequence_flops(arithmetic: dict, length: int) -> float:
    """FLOPs (2 per multiply-add) for one sequence: weights per token, plus Q·K and
    softmax·V, each length² × hidden per layer."""
    weights = arithmetic["macs_per_token"] * length
    attention = arithmetic["attention_layers"] * 2 * length * length * arithmetic["hidden"]
    return 2.0 * (weights + attention)


def best_of(function, repeats: int) -> float:
    function()  # warm-up: allocation, thread pool, kernel choice
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def kernel_peaks(hidden: int, intermediate: int, rows: int, threads: int, work: Path,
                 repeats: int) -> dict:
    """GFLOP/s of one [rows, hidden] x [hidden, intermediate] product, three ways."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from lexedge.runtime.onnx_models import session_options

    rng = np.random.default_rng(0)
    activations = rng.standard_normal((rows, hidden), dtype=np.float32)
    weight = (rng.standard_normal((hidden, intermediate), dtype=np.float32) * 0.05)
    flops = 2.0 * rows * hidden * intermediate
    peaks = {"shape": [rows, hidden, intermediate], "threads": threads}
    peaks["numpy_sgemm"] = flops / best_of(lambda: activations @ weight, repeats) / 1e9

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, hidden])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, intermediate])],
        [numpy_helper.from_array(weight, "w")])
    fp32_path, int8_path = work / "matmul-fp32.onnx", work / "matmul-int8.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              str(fp32_path))
    quantize_dynamic(str(fp32_path), str(int8_path), per_channel=True,
                     weight_type=QuantType.QInt8)
    for name, path in (("onnxruntime_fp32", fp32_path), ("onnxruntime_int8", int8_path)):
        session = ort.InferenceSession(str(path), session_options(threads),
                                       providers=["CPUExecutionProvider"])
        seconds = best_of(lambda: session.run(["y"], {"x": activations}), repeats)
        peaks[name] = flops / seconds / 1e9
    return peaks


def achieved_rate(model, arithmetic: dict, inputs: list, run, warm_up, repeats: int) -> dict:
    """GFLOP/s the bundle's model reaches on ``inputs``, with the token lengths it really saw
    (padding inside a batch is work the model does but the count leaves out)."""
    lengths = [len(e.ids) for e in model.tokenize(inputs)]
    flops = sum(sequence_flops(arithmetic, length) for length in lengths)
    warm_up()
    seconds = statistics.median(_timed(run) for _ in range(repeats))
    return {"items": len(inputs), "mean_tokens": float(np.mean(lengths)),
            "gflop_per_item": flops / len(inputs) / 1e9, "seconds": seconds,
            "gflops": flops / seconds / 1e9, "items_per_second": len(inputs) / seconds}


def _timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def render(results: dict) -> str:
    peaks, emb, rr = results["kernel_peaks"], results["embedder"], results["reranker"]
    best = results["peak_gflops"]
    lines = [
        "# Compute bound of the runtime's speed targets", "",
        f"Machine: {results['machine']}. Bundle: `{results['bundle']}`. All numbers from one "
        "run of `bench/compute_bound.py`.", "",
        "## Peak matrix-multiply rate at the models' layer shape "
        f"({' × '.join(map(str, peaks['shape']))}, {peaks['threads']} threads)", "",
        "| kernel | GFLOP/s |", "|---|---|",
        f"| numpy sgemm (FP32) | {peaks['numpy_sgemm']:.1f} |",
        f"| onnxruntime MatMul (FP32) | {peaks['onnxruntime_fp32']:.1f} |",
        f"| onnxruntime MatMulInteger (INT8, dynamic) | {peaks['onnxruntime_int8']:.1f} |", "",
        "## What the targets need", "",
        "| workload | GFLOP | at peak kernel rate | at the model's achieved rate | target |",
        "|---|---|---|---|---|",
        f"| index all {emb['corpus_articles']:,} STARD articles "
        f"(mean {emb['corpus_mean_tokens']:.0f} tokens) | {emb['corpus_gflop']:,.0f} | "
        f"{emb['build_minutes_at_peak']:.1f} min | {emb['build_minutes_achieved']:.1f} min | "
        f"< {BUILD_TARGET_MIN:.0f} min |",
        f"| re-rank the top {RERANK_TOP} (mean {rr['achieved']['mean_tokens']:.0f} tokens a "
        f"pair) | {rr['gflop_per_query']:.1f} | {rr['rerank_ms_at_peak']:.0f} ms | "
        f"{rr['rerank_ms_achieved']:.0f} ms | < {RERANK_TARGET_MS:.0f} ms (p95, with search) |",
        "",
        f"Peak kernel rate used: {best:.1f} GFLOP/s (the fastest of the three). The models "
        f"reach {emb['achieved']['gflops']:.1f} (embedder) and {rr['achieved']['gflops']:.1f} "
        "(reranker) GFLOP/s.", "",
        "## What would fit", "",
        f"Theoretical FP32 peak of this CPU: {results['theoretical_gflops']:.0f} GFLOP/s "
        f"({results['cores']} cores × 32 FLOP a cycle (two 8-wide FMA units) × "
        f"{results['mhz']:.0f} MHz); the build target alone needs "
        f"{emb['corpus_gflop'] / (BUILD_TARGET_MIN * 60):.0f} GFLOP/s sustained.", "",
        f"Embedder: {emb['arithmetic']['attention_layers']} layers, hidden "
        f"{emb['arithmetic']['hidden']}, {emb['arithmetic']['macs_per_token'] / 1e6:.2f} M "
        "multiply-adds per token. To index STARD in "
        f"{BUILD_TARGET_MIN:.0f} min it needs {emb['speedup_needed_achieved']:.1f}× less "
        f"arithmetic at the achieved rate ({emb['speedup_needed_peak']:.1f}× at the peak "
        f"kernel rate): about {emb['layers_that_fit_achieved']:.1f} layers of this width "
        "instead of "
        f"{emb['arithmetic']['attention_layers']}.", "",
        f"Reranker: {rr['arithmetic']['attention_layers']} layers, hidden "
        f"{rr['arithmetic']['hidden']}. To re-rank {RERANK_TOP} pairs in "
        f"{RERANK_TARGET_MS:.0f} ms it needs {rr['speedup_needed_achieved']:.1f}× less "
        f"arithmetic at the achieved rate ({rr['speedup_needed_peak']:.1f}× at the peak "
        f"kernel rate): about {rr['layers_that_fit_achieved']:.1f} layers, or the present "
        f"{rr['arithmetic']['attention_layers']} layers at about "
        f"{rr['tokens_that_fit_achieved']:.0f} tokens a pair.", "",
        f"Reproduce: `python bench/compute_bound.py --bundle B` (B: {results['bundle_recipe']}).",
        ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "stard")
    parser.add_argument("--sample", type=int, default=1024, help="articles embedded for the "
                        "achieved rate (the build sorts 4,096 at a time by length)")
    parser.add_argument("--queries", type=int, default=8, help="dev queries re-ranked")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--work", type=Path, default=REPO / "work-out" / "compute_bound")
    args = parser.parse_args(argv)

    from lexedge.runtime.bundle import Bundle
    from lexedge.runtime.datasets import BeirDataset, iter_corpus
    from runtime_stard import bundle_recipe

    bundle = Bundle.load(args.bundle)
    if bundle.manifest.get("reranker") is None:
        parser.error(f"{args.bundle}: the bundle has no reranker")
    embedder, reranker = bundle.embedder(args.threads), bundle.reranker(args.threads)
    emb_arith = graph_arithmetic(embedder.model_path)
    rr_arith = graph_arithmetic(reranker.model_path)

    texts = [d.indexed_text for d in iter_corpus(args.data / "corpus.jsonl")]
    prefix = embedder.config.get("passage_prefix") or ""
    corpus_lengths = [len(e.ids) for e in
                      embedder.tokenize([prefix + t for t in texts])]
    corpus_flops = sum(sequence_flops(emb_arith, n) for n in corpus_lengths)

    args.work.mkdir(parents=True, exist_ok=True)
    print("measuring kernel peaks", flush=True)
    # A product takes ~50 ms: the best of many runs is the machine's rate, not its neighbours'.
    peaks = kernel_peaks(emb_arith["hidden"], emb_arith["widest"], 4096, args.threads,
                         args.work, repeats=KERNEL_REPEATS)
    peak = max(peaks["numpy_sgemm"], peaks["onnxruntime_fp32"], peaks["onnxruntime_int8"])

    rng = np.random.default_rng(13)
    sample = [texts[i] for i in rng.choice(len(texts), args.sample, replace=False)]
    print("measuring the embedder", flush=True)
    emb_achieved = achieved_rate(embedder, emb_arith, [prefix + t for t in sample],
                                 lambda: embedder.encode(sample, kind="passage"),
                                 lambda: embedder.encode(sample[:32], kind="passage"),
                                 args.repeats)

    dataset = BeirDataset(args.data)
    queries = dataset.queries()
    dev_ids = sorted(dataset.qrels("dev"))[:args.queries]
    candidates = [[texts[i] for i in rng.choice(len(texts), RERANK_TOP, replace=False)]
                  for _ in dev_ids]
    q_prefix = reranker.config.get("query_prefix") or ""
    p_prefix = reranker.config.get("passage_prefix") or ""
    pairs = [(q_prefix + queries[q], p_prefix + p) for q, group in zip(dev_ids, candidates)
             for p in group]
    print("measuring the reranker", flush=True)
    rr_achieved = achieved_rate(
        reranker, rr_arith, pairs,
        lambda: [reranker.score(queries[q], group) for q, group in zip(dev_ids, candidates)],
        lambda: reranker.score(queries[dev_ids[0]], candidates[0]), args.repeats)

    build_peak = corpus_flops / (peak * 1e9) / 60
    build_achieved = corpus_flops / (emb_achieved["gflops"] * 1e9) / 60
    rr_gflop = rr_achieved["gflop_per_item"] * RERANK_TOP
    rr_peak_ms = rr_gflop / peak * 1e3
    rr_achieved_ms = rr_gflop / rr_achieved["gflops"] * 1e3
    layers_e, layers_r = emb_arith["attention_layers"], rr_arith["attention_layers"]
    tokens = rr_achieved["mean_tokens"]
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {_cpu_flags()}",
        "bundle": str(args.bundle), "bundle_recipe": bundle_recipe(bundle.manifest),
        "kernel_peaks": peaks, "peak_gflops": peak, "cores": os.cpu_count(),
        "mhz": _cpu_mhz(), "theoretical_gflops": os.cpu_count() * 32 * _cpu_mhz() / 1e3,
        "embedder": {
            "arithmetic": emb_arith, "achieved": emb_achieved,
            "corpus_articles": len(texts), "corpus_mean_tokens": float(np.mean(corpus_lengths)),
            "corpus_gflop": corpus_flops / 1e9,
            "build_minutes_at_peak": build_peak, "build_minutes_achieved": build_achieved,
            "speedup_needed_peak": build_peak / BUILD_TARGET_MIN,
            "speedup_needed_achieved": build_achieved / BUILD_TARGET_MIN,
            "layers_that_fit_achieved": layers_e * BUILD_TARGET_MIN / build_achieved},
        "reranker": {
            "arithmetic": rr_arith, "achieved": rr_achieved, "gflop_per_query": rr_gflop,
            "rerank_ms_at_peak": rr_peak_ms, "rerank_ms_achieved": rr_achieved_ms,
            "speedup_needed_peak": rr_peak_ms / RERANK_TARGET_MS,
            "speedup_needed_achieved": rr_achieved_ms / RERANK_TARGET_MS,
            "layers_that_fit_achieved": layers_r * RERANK_TARGET_MS / rr_achieved_ms,
            # weights dominate at these lengths, so time scales about linearly with tokens
            "tokens_that_fit_achieved": tokens * RERANK_TARGET_MS / rr_achieved_ms},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_result(args.out / "compute_bound.json", results)
    markdown = render(results)
    write_markdown_result(args.out / "compute_bound.md", markdown)
    print(markdown)
    return 0


def _cpu_mhz() -> float:
    """The highest clock /proc/cpuinfo reports (0 when unknown)."""
    try:
        return max(float(line.split(":")[1]) for line in
                   Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("cpu MHz"))
    except (OSError, ValueError):
        return 0.0


def _cpu_flags() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "flags unknown"
    shown = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni") if f in flags]
    return " ".join(shown)


if __name__ == "__main__":
    raise SystemExit(main())
