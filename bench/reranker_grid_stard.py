"""The reranker curriculum and the component-wise grid on STARD (issue #4), on CPU.

Runs on the subset and the embedder run of ``bench/embedder_curriculum_stard.py`` (run that
first; its ``--work`` folder is this script's ``--embedder-work``):

1. ``lexedge train reranker`` with ``bench/configs/reranker_stard_cpu.toml`` (stage 2 and 3
   candidates come from ``--embedder-stage`` of that run, and every stage is evaluated by
   re-ranking that embedder's dev top 20);
2. ``lexedge grid``: every embedder stage (base, 1, 2, 3) x reranker stage (1, 2, 3) x budget
   K in {20, 60, 100}, first stage dense and fused with BM25, plus BM25 and each embedder alone;
3. ``lexedge select --budget 100``.

Writes ``bench/results/reranker_grid_stard.{json,md}`` and
``bench/results/reranker_grid_stard_selection.json``. ``--resume`` continues an interrupted
run (training resumes from its checkpoint, the grid from its cache).

    python bench/reranker_grid_stard.py [--resume]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHOWN = ("recall@10", "recall@20", "recall@60", "recall@100", "mrr@10", "ndcg@10")
KEPT = ("recall@1", "recall@3", "recall@5", "recall@10", "recall@20", "recall@50", "recall@60",
        "recall@100", "recall@200", "mrr@10", "ndcg@10", "queries", "method", "first_stage",
        "budget", "rerank_ms_per_query", "row")


def keep(row: dict) -> dict:
    return {k: row[k] for k in KEPT if k in row}


def render_markdown(results: dict, selection: dict) -> str:
    setup = results["setup"]
    grid = setup["grid"]
    budgets = grid["budgets"]
    emb = list(grid["embedders"])
    rr = list(grid["rerankers"])
    lines = [
        "# Reranker curriculum and component-wise selection on STARD (CPU, subset)", "",
        f"Dev split: {grid['queries']} queries over the {grid['corpus_size']:,}-article subset "
        "of `bench/results/embedder_curriculum_stard.md` (not comparable with full-corpus "
        "numbers). Embedder run: the no-weak-pairs curriculum "
        "(`embedder_curriculum_stard_no_weak_pairs.md`); reranker: multilingual-e5-small's "
        f"first {setup['reranker']['base_layers']} layers with a fresh one-logit head, pairs "
        f"of at most {grid['pair_max_length']} tokens, trained through stages 1-3 on CPU. "
        "A pipeline row re-orders the first stage's K candidates with the reranker: Recall@K "
        "is the first stage's, MRR@10 and nDCG@10 the re-ordered list's. Rerank ms/query = "
        "K x measured torch FP32 time per pair on this 2-core machine.", "",
        "## Selection", "",
        f"- embedder: stage **{selection['embedder']['stage']}** "
        f"({selection['first_stage']} first stage) — {selection['rules']['embedder']}",
        (f"- reranker: stage **{selection['reranker']['stage']}** — "
         f"{selection['rules']['reranker']}" if selection["reranker"] else
         f"- reranker: **none** — the best stage ({selection['reranker_rejected']['stage']}, "
         f"nDCG@10 {selection['reranker_rejected']['ndcg@10']:.4f}) stays below the first "
         f"stage alone ({selection['reranker_rejected']['first_stage_alone']:.4f}); rule: "
         f"{selection['rules']['reranker']}"),
        f"- end to end ({selection['end_to_end']['row']}): MRR@10 "
        f"**{selection['end_to_end']['mrr@10']:.4f}**, nDCG@10 "
        f"**{selection['end_to_end']['ndcg@10']:.4f}**, vs the best embedder alone "
        f"({results['embedder_only']['row']}) {results['embedder_only']['mrr@10']:.4f} / "
        f"{results['embedder_only']['ndcg@10']:.4f} and BM25 "
        f"{results['bm25']['mrr@10']:.4f} / {results['bm25']['ndcg@10']:.4f}.", "",
        "## First stage alone", "",
        "| row | " + " | ".join(m.replace("recall", "R") for m in SHOWN) + " |",
        "|---|" + "---|" * len(SHOWN)]
    for name in ["bm25"] + [f"emb{e}{f}" for e in emb for f in ("", "+bm25")]:
        row = results[name]
        lines.append(f"| {name} | " + " | ".join(f"{row[m]:.4f}" for m in SHOWN) + " |")
    lines += ["", "Embedder stage labels: 0 = base model, 1-3 = curriculum stages; +bm25 = "
              f"fused with BM25 (normalised weighted scores, alpha {grid['alpha']}).", ""]
    for metric in ("ndcg@10", "mrr@10"):
        lines += [f"## End to end {metric.replace('ndcg', 'nDCG').replace('mrr', 'MRR')} "
                  "(rows: first stage; columns: reranker stage @ K)", "",
                  "| first stage | " + " | ".join(f"rr{r} @{k}" for k in budgets for r in rr)
                  + " |", "|---|" + "---|" * (len(rr) * len(budgets))]
        for e in emb:
            for f in ("", "+bm25"):
                cells = [f"{results[f'emb{e}{f}_rr{r}_k{k}'][metric]:.4f}"
                         for k in budgets for r in rr]
                lines.append(f"| emb{e}{f} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Reranker stages alone (dev, re-ranking the embedder's top "
              f"{setup['reranker']['candidates']})", "",
              "| stage | MRR@10 | nDCG@10 | R@10 | train s | steps | loss first → last |",
              "|---|---|---|---|---|---|---|"]
    for name, row in setup["reranker"]["stages"].items():
        lines.append(f"| {name} | {row['mrr@10']:.4f} | {row['ndcg@10']:.4f} | "
                     f"{row['recall@10']:.4f} | {row['train_seconds']} | {row['steps']} | "
                     f"{row['loss_first']:.3f} → {row['loss_last']:.3f} |")
    lines += ["", "Rerank time per query (ms, torch FP32, 2 threads): " + ", ".join(
        f"K={k}: {results[f'emb{emb[-1]}_rr{rr[-1]}_k{k}']['rerank_ms_per_query']}"
        for k in budgets) + ".", "",
        f"Wall time: training {setup['wall_seconds']['train']:.0f} s (stages, mining "
        f"included); grid: reranker scoring "
        f"{sum(grid.get('scoring_seconds', {}).values()):.0f} s for "
        f"{len(grid.get('scoring_seconds', {}))} stages, this invocation "
        f"{setup['wall_seconds']['grid']:.0f} s (the grid resumes from its cache). "
        f"{setup.get('remark', '')}", "",
        f"Reproduce: `{setup['command']}` (after `python bench/embedder_curriculum_stard.py "
        "--set stage1.weak_pairs=0 --name embedder_curriculum_stard_no_weak_pairs --work "
        "work-out/embedder_curriculum_stard_noweak`).", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path,
                        default=HERE / "configs" / "reranker_stard_cpu.toml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--embedder-work", type=Path,
                        default=REPO / "work-out" / "embedder_curriculum_stard_noweak")
    parser.add_argument("--embedder-stage", default="stage3")
    parser.add_argument("--work", type=Path, default=REPO / "work-out" / "reranker_grid_stard")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--budget", type=int, default=100, help="serving budget for select")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--remark", default="", help="a sentence about this run for the report")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from lexedge.runtime.storage import write_json_atomic
    from lexedge.trainer.config import TrainRerankerConfig, load_config
    from lexedge.trainer.curriculum import Curriculum
    from lexedge.trainer.grid import GridConfig, SelectionRules, run_grid, select_stages
    from lexedge.trainer.provenance import hardware
    from lexedge.trainer.reranker import RerankerFamily

    subset_dir = args.embedder_work / "stard_subset"
    embedder_run = args.embedder_work / "run"
    if not (embedder_run / args.embedder_stage / "lexedge_stage.json").is_file():
        raise SystemExit(f"{embedder_run / args.embedder_stage}: run the embedder bench first")
    run_dir = args.work / "run"
    config = load_config(TrainRerankerConfig, args.config, [
        f'data_dir="{subset_dir}"', f'output_dir="{run_dir}"',
        f'embedder="{embedder_run / args.embedder_stage}"', *args.overrides])
    summary = Curriculum(config, RerankerFamily, resume=args.resume,
                         log=lambda line: print(line, flush=True)).run()
    started = time.perf_counter()
    grid = run_grid(GridConfig(embedders=str(embedder_run), rerankers=str(run_dir),
                               out=str(args.work / "grid"), device=config.runtime.device),
                    log=lambda line: print(line, flush=True))
    grid_seconds = time.perf_counter() - started
    selection = select_stages(args.work / "grid", SelectionRules(budget=args.budget))

    stages = {}
    for name, metrics in summary["metrics"].items():
        manifest = json.loads((run_dir / name / "lexedge_stage.json").read_text())
        training = manifest["training"]
        mining = sum(m.get("seconds", 0) for m in manifest.get("mining", []))
        stages[name] = {**{k: metrics[k] for k in ("recall@10", "mrr@10", "ndcg@10")},
                        "train_seconds": round(training["seconds"] + mining, 1),
                        "steps": training["steps"], "loss_first": training["loss_first"],
                        "loss_last": training["loss_last"], "mining": manifest["mining"]}
    results = {name: keep(row) for name, row in grid.items() if name != "setup"}
    command = "python bench/reranker_grid_stard.py" + "".join(
        f" --set {item}" for item in args.overrides)
    results["setup"] = {
        "grid": grid["setup"], "hardware": hardware(),
        "reranker": {"base_layers": config.base_layers,
                     "candidates": config.evaluation.candidates, "stages": stages,
                     "config_file": str(args.config.resolve().relative_to(REPO))
                     if args.config.resolve().is_relative_to(REPO) else str(args.config),
                     "config": summary["config"]},
        "wall_seconds": {"train": round(sum(r["train_seconds"] for r in stages.values()), 1),
                         "grid": round(grid_seconds, 1)},
        "remark": args.remark, "command": command}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "reranker_grid_stard.json", results)
    shutil.copyfile(args.work / "grid" / "selection.json",
                    args.out / "reranker_grid_stard_selection.json")
    markdown = render_markdown(results, selection)
    (args.out / "reranker_grid_stard.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
