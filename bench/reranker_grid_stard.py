"""The reranker curriculum and the component-wise grid on STARD (issue #4), on CPU or GPU.

Runs on the subset and the embedder run of ``bench/embedder_curriculum_stard.py`` (run that
first; its ``--work`` folder is this script's ``--embedder-work``):

1. ``lexedge train reranker`` with ``--config`` (default
   ``bench/configs/reranker_stard_gpu_split.toml``, which needs a CUDA device: add ``--set
   runtime.device=cpu`` without one, or use ``reranker_stard_cpu_split.toml``); stage 2 and 3
   candidates come from ``--embedder-stage`` of that run, and every stage is evaluated by
   re-ranking that embedder's dev top 20;
2. ``lexedge grid``: every embedder stage (base, 1, 2, 3) x reranker stage (1, 2, 3) x budget
   K in {20, 60, 100} x reranker weight W (the re-ranked candidates ordered by W x reranker +
   (1 - W) x first stage; W = 1 is the reranker alone), first stage dense and fused with BM25,
   plus BM25 and each embedder alone;
3. ``lexedge select --budget 20``;
4. a held-out check of that choice: the dev queries split in two seeded halves, the stages and
   W chosen on one half and measured on the other (both ways), against the first stage
   chosen with them and BM25 on the same held-out half.

Writes ``bench/results/NAME.{json,md}`` and ``bench/results/NAME_selection.json`` (NAME:
``reranker_grid_stard``). ``--resume`` continues an interrupted run (training resumes from
its checkpoint, the grid from its cache).

    python bench/reranker_grid_stard.py --start-from-embedder [--resume]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import time
from pathlib import Path

from report import write_json_result, write_markdown_result

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULTS = {"config": HERE / "configs" / "reranker_stard_gpu_split.toml",
            "embedder_work": REPO / "work-out" / "embedder_curriculum_stard_full",
            "work": REPO / "work-out" / "reranker_gpu"}
HEADS = {"pooler": "a fresh one-logit head over the CLS vector and BERT's pooler",
         "mean": "a fresh one-logit head over the mean of the last layer's tokens",
         "segments": "the `segments` head (the cosine of the query's and the passage's token "
                     "means in the joint encoding over a temperature: no fresh weights)"}
KEPT = ("recall@1", "recall@3", "recall@5", "recall@10", "recall@20", "recall@50", "recall@60",
        "recall@100", "recall@200", "mrr@10", "ndcg@10", "queries", "method", "first_stage",
        "budget", "rerank_weight", "rerank_ms_per_query", "row")


def keep(row: dict) -> dict:
    return {k: row[k] for k in KEPT if k in row}


def shown_path(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def held_out_check(grid_config, rules, work: Path, seed: int) -> dict:
    """Choose on one half of the dev queries, measure on the other, both ways."""
    from lexedge.runtime.datasets import BeirDataset
    from lexedge.trainer.selection.grid import run_grid
    from lexedge.trainer.selection.select import select_stages

    full = json.loads((Path(grid_config.out) / "grid.json").read_text(encoding="utf-8"))
    dataset = BeirDataset(Path(full["setup"]["data_dir"]))
    ids = sorted(dataset.qrels(grid_config.split, query_ids=dataset.queries()))
    random.Random(seed).shuffle(ids)
    halves = [sorted(ids[0::2]), sorted(ids[1::2])]
    folds = []
    for index, (choose, measure) in enumerate(((0, 1), (1, 0))):
        grids = {}
        for role, half in (("choose", choose), ("measure", measure)):
            out = work / f"fold{index}-{role}"
            grids[role] = run_grid(dataclasses.replace(
                grid_config, out=str(out), query_ids=halves[half], progress=False,
                cache_dir=str(Path(grid_config.out) / ".cache")), log=lambda line: None)
        selection = select_stages(work / f"fold{index}-choose", rules)
        chosen = selection["end_to_end"]["row"]
        first = f"emb{selection['embedder']['stage']}" + \
            ("+bm25" if selection["first_stage"] == "hybrid" else "")
        measured = grids["measure"]
        folds.append({
            "chosen_on": len(halves[choose]), "measured_on": measured["bm25"]["queries"],
            "chosen_row": chosen, "first_stage_row": first,
            "held_out": {name: {m: measured[row][m] for m in ("mrr@10", "ndcg@10")}
                         for name, row in (("pipeline", chosen), ("first_stage", first),
                                           ("bm25", "bm25"))}})
    mean = {name: {m: sum(f["held_out"][name][m] for f in folds) / len(folds)
                   for m in ("mrr@10", "ndcg@10")} for name in folds[0]["held_out"]}
    return {"seed": seed, "folds": folds, "mean": mean}


def start_of(reranker: dict) -> str:
    """What the cross-encoder started from, in words."""
    base = reranker.get("base_model", "default")
    layers = reranker["base_layers"]
    if base in ("default", "e5-small"):
        return (f"multilingual-e5-small's first {layers} layers" if layers
                else "multilingual-e5-small (all 12 layers)")
    kept = f"its first {layers} layers" if layers else "all its layers"
    return f"the trained embedder `{shown_path(Path(base))}` merged, {kept}"


def head_description(reranker: dict) -> str:
    config = reranker.get("config") or {}
    split = int(config.get("separate_layers") or 0)
    if not split:
        return HEADS[reranker["head"]]
    return (f"the `segments` head with split attention: its first {split} layers encode the "
            "query and the passage each alone (as the embedder does), the layers above attend "
            f"across the pair with {config['cross_attention_bias']:g} added to every "
            "query-passage attention logit, and only they are trained (LoRA over cached "
            "lower-layer states)")


def machine_of(hardware: dict) -> str:
    """Where a run's timings were taken, for the report's prose."""
    if hardware.get("cuda"):
        return f"one {hardware['cuda'][0]} GPU"
    return f"a {hardware['cpu_count']}-core CPU machine ({hardware['torch_threads']} torch threads)"


def render_markdown(results: dict, selection: dict) -> str:
    from lexedge.trainer.selection.grid import row_key

    setup = results["setup"]
    machine = machine_of(setup["hardware"])
    runtime = setup["reranker"]["config"]["runtime"]
    trained_on = "GPU, bf16 autocast" if runtime["device"] == "cuda" and runtime["bf16"] \
        else runtime["device"].upper()
    grid = setup["grid"]
    budgets = grid["budgets"]
    emb = list(grid["embedders"])
    rr = list(grid["rerankers"])
    weights = grid.get("rerank_weights", [1.0])
    budget = selection["budget"]
    chosen = selection["reranker"] or selection["reranker_rejected"]
    chosen_weight = chosen["rerank_weight"]
    lines = [
        "# Reranker curriculum and component-wise selection on STARD (subset)", "",
        f"Dev split: {grid['queries']} queries over the {grid['corpus_size']:,}-article subset "
        f"of `bench/results/{setup['embedder_report']}` (not comparable with full-corpus "
        f"numbers); embedder stages from that run. Reranker: {start_of(setup['reranker'])} "
        f"with {head_description(setup['reranker'])}, "
        f"pairs of at most {grid['pair_max_length']} tokens, trained through stages "
        f"{', '.join(s.removeprefix('stage') for s in setup['reranker']['stages'] if s != 'base')}"
        f"{' (stage 0 / base: the untrained start, measured)' if 'base' in setup['reranker']['stages'] else ''} on {trained_on} "
        f"(`{setup['reranker']['config_file']}`). A pipeline row re-orders the first stage's "
        "K candidates: by the reranker alone (W = 1), or by W x reranker + (1 - W) x first "
        "stage, both min-max normalised over the K candidates (`lexedge search "
        "--rerank-weight W`). Recall@K is the first stage's, MRR@10 and nDCG@10 the re-ordered "
        f"list's. Rerank ms/query = K x measured torch FP32 time per pair on {machine}.", "",
        "## Selection", "",
        f"- embedder: stage **{selection['embedder']['stage']}** "
        f"({selection['first_stage']} first stage) — {selection['rules']['embedder']}",
        (f"- reranker: stage **{selection['reranker']['stage']}**, W = "
         f"**{chosen_weight:g}** — {selection['rules']['reranker']}" if selection["reranker"]
         else f"- reranker: **none** — the best stage ({chosen['stage']}, W = "
         f"{chosen_weight:g}, nDCG@10 {chosen['ndcg@10']:.4f}) stays below the first stage "
         f"alone ({chosen['first_stage_alone']:.4f}); rule: {selection['rules']['reranker']}"),
        f"- end to end ({selection['end_to_end']['row']}): MRR@10 "
        f"**{selection['end_to_end']['mrr@10']:.4f}**, nDCG@10 "
        f"**{selection['end_to_end']['ndcg@10']:.4f}**, vs the best embedder alone "
        f"({results['embedder_only']['row']}) {results['embedder_only']['mrr@10']:.4f} / "
        f"{results['embedder_only']['ndcg@10']:.4f} and BM25 "
        f"{results['bm25']['mrr@10']:.4f} / {results['bm25']['ndcg@10']:.4f}.", ""]
    check = setup.get("held_out_check")
    if check:
        mean = check["mean"]
        lines += [
            "## Held-out check of the choice", "",
            f"The {grid['queries']} dev queries split in two seeded halves (seed "
            f"{check['seed']}); stages and W chosen on one half by the same rules, measured on "
            "the other, both ways:", "",
            "| fold | chosen | held-out MRR@10 | nDCG@10 | its first stage alone | BM25 |",
            "|---|---|---|---|---|---|"]
        for index, fold in enumerate(check["folds"]):
            held = fold["held_out"]
            lines.append(
                f"| {index} | {fold['chosen_row']} | {held['pipeline']['mrr@10']:.4f} | "
                f"{held['pipeline']['ndcg@10']:.4f} | {fold['first_stage_row']}: "
                f"{held['first_stage']['mrr@10']:.4f} / {held['first_stage']['ndcg@10']:.4f} "
                f"| {held['bm25']['mrr@10']:.4f} / {held['bm25']['ndcg@10']:.4f} |")
        lines += [f"| mean | | **{mean['pipeline']['mrr@10']:.4f}** | "
                  f"**{mean['pipeline']['ndcg@10']:.4f}** | {mean['first_stage']['mrr@10']:.4f}"
                  f" / {mean['first_stage']['ndcg@10']:.4f} | {mean['bm25']['mrr@10']:.4f} / "
                  f"{mean['bm25']['ndcg@10']:.4f} |", ""]
    shown = [*dict.fromkeys(["recall@10", *(f"recall@{k}" for k in budgets), "recall@100"]),
             "mrr@10", "ndcg@10"]  # Recall@K exists for every budget K and the usual cutoffs
    lines += ["## First stage alone", "",
              "| row | " + " | ".join(m.replace("recall", "R") for m in shown) + " |",
              "|---|" + "---|" * len(shown)]
    for name in ["bm25"] + [f"emb{e}{f}" for e in emb for f in ("", "+bm25")]:
        row = results[name]
        lines.append(f"| {name} | " + " | ".join(f"{row[m]:.4f}" for m in shown) + " |")
    lines += ["", "Embedder stage labels: 0 = base model, 1-3 = curriculum stages; +bm25 = "
              f"fused with BM25 (normalised weighted scores, alpha {grid['alpha']}).", ""]
    shown_weights = [1.0] + ([chosen_weight] if chosen_weight != 1.0 else [])
    for weight in shown_weights:
        for metric in ("ndcg@10", "mrr@10"):
            lines += [f"## End to end {metric.replace('ndcg', 'nDCG').replace('mrr', 'MRR')}, "
                      f"W = {weight:g} (rows: first stage; columns: reranker stage @ K)", "",
                      "| first stage | alone | " + " | ".join(
                          f"rr{r} @{k}" for k in budgets for r in rr) + " |",
                      "|---|---|" + "---|" * (len(rr) * len(budgets))]
            for e in emb:
                for f in ("", "+bm25"):
                    cells = [f"{results[row_key(f'emb{e}{f}', r, k, weight)][metric]:.4f}"
                             for k in budgets for r in rr]
                    lines.append(f"| emb{e}{f} | {results[f'emb{e}{f}'][metric]:.4f} | "
                                 + " | ".join(cells) + " |")
            lines.append("")
    first = selection["end_to_end"]["row"].split("_rr")[0]
    lines += [f"## Reranker weight W behind {first} at K = {budget} (nDCG@10 / MRR@10)", "",
              "| reranker stage | " + " | ".join(f"W = {w:g}" for w in weights) + " |",
              "|---|" + "---|" * len(weights)]
    for r in rr:
        cells = [f"{results[row_key(first, r, budget, w)]['ndcg@10']:.4f} / "
                 f"{results[row_key(first, r, budget, w)]['mrr@10']:.4f}" for w in weights]
        lines.append(f"| rr{r} | " + " | ".join(cells) + " |")
    lines += ["", f"First stage alone ({first}): {results[first]['ndcg@10']:.4f} / "
              f"{results[first]['mrr@10']:.4f}.", "",
              "## Reranker stages alone (dev, re-ranking the embedder's top "
              f"{setup['reranker']['candidates']})", "",
              "| stage | MRR@10 | nDCG@10 | R@10 | train s | steps | loss first → last |",
              "|---|---|---|---|---|---|---|"]
    for name, row in setup["reranker"]["stages"].items():
        loss = "—" if row["loss_first"] is None else \
            f"{row['loss_first']:.3f} → {row['loss_last']:.3f}"
        lines.append(f"| {name} | {row['mrr@10']:.4f} | {row['ndcg@10']:.4f} | "
                     f"{row['recall@10']:.4f} | {row['train_seconds']} | {row['steps']} | "
                     f"{loss} |")
    lines += ["", f"Rerank time per query (ms, torch FP32, {machine}): " + ", ".join(
        f"K={k}: {results[row_key(f'emb{emb[-1]}', rr[-1], k, 1.0)]['rerank_ms_per_query']}"
        for k in budgets) + ".", "",
        f"Wall time: training {setup['wall_seconds']['train']:.0f} s (stages, mining "
        f"included); grid: reranker scoring "
        f"{sum(grid.get('scoring_seconds', {}).values()):.0f} s for "
        f"{len(grid.get('scoring_seconds', {}))} stages, this invocation "
        f"{setup['wall_seconds']['grid']:.0f} s (the grid resumes from its cache). "
        f"{setup.get('remark', '')}", "",
        f"Reproduce: `{setup['command']}` (after `{setup['embedder_command']}`).", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULTS["config"])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--embedder-work", type=Path, default=DEFAULTS["embedder_work"])
    parser.add_argument("--embedder-stage", default="stage3")
    parser.add_argument("--embedder-report", default="embedder_curriculum_stard.md",
                        help="the bench/results report of the embedder run")
    parser.add_argument("--work", type=Path, default=DEFAULTS["work"])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--name", default="reranker_grid_stard")
    parser.add_argument("--budget", type=int, default=20,
                        help="serving budget for select (default 20: every candidate is "
                             "re-scored, and 20 pairs is what a laptop re-ranks in about a "
                             "second; 100 would take four)")
    parser.add_argument("--start-from-embedder", action="store_true",
                        help="the reranker's base_model is --embedder-stage itself (merged), "
                             "not the config's base model")
    parser.add_argument("--budgets", default="20,60,100", help="the grid's budgets K")
    parser.add_argument("--grid-embedders", default="",
                        help="embedder stages the grid measures (default: all, base included)")
    parser.add_argument("--seed", type=int, default=13, help="seed of the held-out halves")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--remark", default="", help="a sentence about this run for the report")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite NAME.md from the committed NAME.json and selection")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.render_only:
        results = json.loads((args.out / f"{args.name}.json").read_text(encoding="utf-8"))
        selection = json.loads((args.out / f"{args.name}_selection.json")
                               .read_text(encoding="utf-8"))
        write_markdown_result(args.out / f"{args.name}.md", render_markdown(results, selection))
        return 0

    from lexedge.trainer.config import TrainRerankerConfig
    from lexedge.trainer.config_loader import load_config
    from lexedge.trainer.curriculum import Curriculum
    from lexedge.trainer.provenance import hardware
    from lexedge.trainer.reranker.family import RerankerFamily
    from lexedge.trainer.selection.grid import GridConfig, run_grid
    from lexedge.trainer.selection.select import SelectionRules, select_stages

    subset_dir = args.embedder_work / "stard_subset"
    embedder_run = args.embedder_work / "run"
    if not (embedder_run / args.embedder_stage / "lexedge_stage.json").is_file():
        raise SystemExit(f"{embedder_run / args.embedder_stage}: run the embedder bench first")
    run_dir = args.work / "run"
    config = load_config(TrainRerankerConfig, args.config, [
        f'data_dir="{subset_dir}"', f'output_dir="{run_dir}"',
        f'embedder="{embedder_run / args.embedder_stage}"',
        *([f'base_model="{embedder_run / args.embedder_stage}"']
          if args.start_from_embedder else []), *args.overrides])
    summary = Curriculum(config, RerankerFamily, resume=args.resume,
                         log=lambda line: print(line, flush=True)).run()
    started = time.perf_counter()
    grid_config = GridConfig(embedders=str(embedder_run), rerankers=str(run_dir),
                             out=str(args.work / "grid"), device=config.runtime.device,
                             budgets=[int(k) for k in args.budgets.split(",")],
                             embedder_stages=[s for s in args.grid_embedders.split(",") if s])
    grid = run_grid(grid_config, log=lambda line: print(line, flush=True))
    rules = SelectionRules(budget=args.budget)
    selection = select_stages(args.work / "grid", rules)
    check = held_out_check(grid_config, rules, args.work / "held_out", args.seed)
    grid_seconds = time.perf_counter() - started

    stages = {}
    for name, metrics in summary["metrics"].items():
        if name == "base":  # a segments base: measured, not trained
            stages[name] = {**{k: metrics[k] for k in ("recall@10", "mrr@10", "ndcg@10")},
                            "train_seconds": 0, "steps": 0, "loss_first": None,
                            "loss_last": None, "mining": []}
            continue
        manifest = json.loads((run_dir / name / "lexedge_stage.json").read_text())
        training = manifest["training"]
        mining = sum(m.get("seconds", 0) for m in manifest.get("mining", []))
        stages[name] = {**{k: metrics[k] for k in ("recall@10", "mrr@10", "ndcg@10")},
                        "train_seconds": round(training["seconds"] + mining, 1),
                        "steps": training["steps"], "loss_first": training["loss_first"],
                        "loss_last": training["loss_last"], "mining": manifest["mining"]}
    results = {name: keep(row) for name, row in grid.items() if name != "setup"}
    command = ["python bench/reranker_grid_stard.py"]
    for flag, key in (("--config", "config"), ("--embedder-work", "embedder_work"),
                      ("--work", "work")):
        if getattr(args, key).resolve() != DEFAULTS[key].resolve():
            command.append(f"{flag} {shown_path(getattr(args, key))}")
    command += [f"--set {item}" for item in args.overrides]
    if args.start_from_embedder:
        command.append("--start-from-embedder")
    if args.budgets != "20,60,100":
        command.append(f"--budgets {args.budgets}")
    if args.grid_embedders:
        command.append(f"--grid-embedders {args.grid_embedders}")
    if args.name != "reranker_grid_stard":
        command.append(f"--name {args.name}")
    if args.budget != 20:
        command.append(f"--budget {args.budget}")
    embedder_results = json.loads((HERE / "results" / args.embedder_report.replace(".md", ".json"))
                                  .read_text(encoding="utf-8"))
    results["setup"] = {
        "grid": grid["setup"], "hardware": hardware(),
        "embedder_report": args.embedder_report,
        "embedder_command": embedder_results["setup"]["command"],
        "reranker": {"base_model": config.base_model, "base_layers": config.base_layers,
                     "head": config.head,
                     "candidates": config.evaluation.candidates, "stages": stages,
                     "config_file": shown_path(args.config), "config": summary["config"]},
        "held_out_check": check,
        "wall_seconds": {"train": round(sum(r["train_seconds"] for r in stages.values()), 1),
                         "grid": round(grid_seconds, 1)},
        "remark": args.remark, "command": " ".join(command)}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_result(args.out / f"{args.name}.json", results)
    write_json_result(args.out / f"{args.name}_selection.json", json.loads(
        (args.work / "grid" / "selection.json").read_text(encoding="utf-8")))
    markdown = render_markdown(results, selection)
    write_markdown_result(args.out / f"{args.name}.md", markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
