"""The served pipeline on the STARD subset (issue #4): the INT8 bundle exported from a
selection, searched exactly as ``lexedge search`` does (ONNX + HNSW + BM25), side by side in
one run: BM25, the hybrid first stage alone, and the first stage re-ranked by the bundle's
reranker alone (W = 1) and mixed with the first stage at the bundle's weight W.

    lexedge export --int8 --selection bench/results/reranker_grid_stard_selection.json --out B
    python bench/served_pipeline_stard.py --bundle B

The index of the subset is built once (``--index``, kept for re-runs). Queries per second
are measured in the same run; their ratios to the first stage alone are what to compare.
Each re-ranked row is compared with the hybrid first stage query by query: the mean
difference of MRR@10 and nDCG@10, its 95 % bootstrap interval, and the two-sided p-value of a
paired sign-flip permutation test (scipy.stats; 10,000 resamples, seeded).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from lexedge.runtime.settings import SearchSettings

from report import write_json_result, write_markdown_result

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SUBSET = REPO / "work-out" / "embedder_curriculum_stard_full" / "stard_subset"
SHOWN = ("recall@10", "recall@20", "mrr@10", "ndcg@10")
PAIRED = ("mrr@10", "ndcg@10")


def per_query(run: dict, qrels: dict) -> dict[str, list[float]]:
    """MRR@10 and nDCG@10 of every judged query, in the qrels' query order."""
    from lexedge.runtime.metrics import mrr_at_k, ndcg_at_k

    scores = {"mrr@10": [], "ndcg@10": []}
    for query_id, relevant in qrels.items():
        ranking = [doc for doc, _ in run.get(query_id, ())]
        scores["mrr@10"].append(mrr_at_k(ranking, relevant, 10))
        scores["ndcg@10"].append(ndcg_at_k(ranking, relevant, 10))
    return scores


def paired_test(candidate: list[float], baseline: list[float], seed: int = 13) -> dict:
    """Mean per-query difference, its 95 % bootstrap interval, and a paired permutation p."""
    import numpy as np
    from scipy import stats

    difference = np.asarray(candidate) - np.asarray(baseline)
    rng = np.random.default_rng(seed)
    interval = stats.bootstrap((difference,), np.mean, n_resamples=10_000,
                               random_state=rng).confidence_interval
    test = stats.permutation_test((np.asarray(candidate), np.asarray(baseline)),
                                  lambda a, b: np.mean(a - b), permutation_type="samples",
                                  n_resamples=10_000, random_state=rng)
    return {"mean_difference": float(difference.mean()),
            "ci95": [float(interval.low), float(interval.high)],
            "p_value": float(test.pvalue), "better": int((difference > 0).sum()),
            "worse": int((difference < 0).sum()), "queries": int(difference.size)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=SUBSET)
    parser.add_argument("--index", type=Path,
                        default=REPO / "work-out" / "served_pipeline_stard" / "index")
    parser.add_argument("--budget", type=int, default=20, help="retrieval budget K")
    parser.add_argument("--rerank", type=int, default=SearchSettings().rerank,
                        help="candidates re-scored (default: lexedge search's)")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--name", default="served_pipeline_stard")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from lexedge.runtime.bundle import Bundle
    from lexedge.runtime.datasets import BeirDataset
    from lexedge.runtime.evaluation import EvalConfig, run_evaluation
    from lexedge.runtime.index import MANIFEST_FILE, Index

    bundle = Bundle.load(args.bundle)
    if not bundle.has_reranker:
        raise SystemExit(f"{args.bundle}: has no reranker")
    weight = float(bundle.manifest["reranker"].get("rerank_weight", 1.0))
    build_seconds = None
    if not (args.index / MANIFEST_FILE).is_file():
        started = time.perf_counter()
        Index.build(args.data / "corpus.jsonl", args.index, bundle=bundle, progress=True)
        build_seconds = round(time.perf_counter() - started, 1)

    dataset = BeirDataset(args.data)
    qrels = dataset.qrels(args.split, query_ids=dataset.queries())
    rows, by_query = {}, {}

    def measure(name: str, method: str, **options) -> None:
        config = EvalConfig(data_dir=str(args.data), split=args.split, method=method,
                            index=str(args.index), bundle=str(args.bundle),
                            budget=args.budget, rerank=args.rerank, **options)
        rows[name], run = run_evaluation(config)
        by_query[name] = per_query(run, qrels)
        print(f"{name}: mrr@10 {rows[name]['mrr@10']:.4f} "
              f"ndcg@10 {rows[name]['ndcg@10']:.4f}", flush=True)

    measure("bm25", "bm25")
    measure("hybrid", "hybrid")
    measure("pipeline_w1", "pipeline", rerank_weight=1.0)
    if weight != 1.0:
        measure(f"pipeline_w{weight:g}", "pipeline", rerank_weight=weight)
    baseline = rows["hybrid"]["queries_per_second"]
    paired = {name: {m: paired_test(by_query[name][m], by_query["hybrid"][m]) for m in PAIRED}
              for name in rows if name.startswith("pipeline")}
    setup = {"bundle": str(args.bundle), "bundle_sha256": bundle.sha256,
             "selection": (bundle.manifest.get("selection") or {}).get("end_to_end"),
             "data": str(args.data), "split": args.split, "budget": args.budget,
             "rerank": args.rerank, "rerank_weight": weight,
             "index_build_seconds": build_seconds,
             "command": f"python bench/served_pipeline_stard.py --bundle {args.bundle}"
             + (f" --budget {args.budget}" if args.budget != 20 else "")
             + (f" --rerank {args.rerank}" if args.rerank != SearchSettings().rerank
                else "")}
    results = {"setup": setup, **{name: {k: row[k] for k in (*SHOWN, f"recall@{args.budget}",
                                                               "queries", "queries_per_second")
                                         if k in row} for name, row in rows.items()},
               "paired_vs_hybrid": paired}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_result(args.out / f"{args.name}.json", results)
    lines = [
        "# The served pipeline on the STARD subset (INT8 bundle, ONNX + HNSW + BM25)", "",
        f"{rows['bm25']['queries']} {args.split} queries over the "
        f"{rows['hybrid'].get('corpus_size', '?')}-article subset, searched as `lexedge "
        f"search --budget {args.budget} --rerank {args.rerank}` does; the bundle's reranker "
        f"weight W = {weight:g} (chosen by `lexedge select`). Time per query relative to "
        "the hybrid first stage alone, measured in the same run.", "",
        "| row | " + " | ".join(m.replace("recall", "R") for m in SHOWN)
        + " | time per query vs hybrid |", "|---|" + "---|" * (len(SHOWN) + 1)]
    for name, row in rows.items():
        ratio = baseline / row["queries_per_second"] if row["queries_per_second"] else None
        lines.append(f"| {name} | " + " | ".join(f"{row[m]:.4f}" for m in SHOWN)
                     + f" | {ratio:.2g}× |")
    lines += ["", "Per query against the hybrid first stage (mean difference, 95 % bootstrap "
              "interval, paired permutation p, queries better / worse):", "",
              "| row | " + " | ".join(PAIRED) + " |", "|---|" + "---|" * len(PAIRED)]
    for name, tests in paired.items():
        lines.append(f"| {name} | " + " | ".join(
            f"{t['mean_difference']:+.4f} [{t['ci95'][0]:+.4f}, {t['ci95'][1]:+.4f}], "
            f"p = {t['p_value']:.3g}, {t['better']} / {t['worse']}"
            for t in (tests[m] for m in PAIRED)) + " |")
    lines += ["", f"Reproduce: `{setup['command']}`.", ""]
    write_markdown_result(args.out / f"{args.name}.md", "\n".join(lines))
    print("\n".join(lines))
    print(json.dumps(setup, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
