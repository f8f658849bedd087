"""How much of the reranker grid's gain is the seed: one table over several runs of
``bench/reranker_grid_stard.py`` that differ only in ``--set seed=N``.

Reads ``bench/results/<name>.json`` for each ``--names`` entry and writes
``bench/results/<out>.md`` and ``.json``: per run, every reranker stage alone on the embedder's
top 20, the selected pipeline end to end against the best embedder alone, the held-out check,
and the mean, minimum and maximum over the runs.

    python bench/reranker_seeds_stard.py
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from report import write_json_result, write_markdown_result

HERE = Path(__file__).resolve().parent
METRICS = ("mrr@10", "ndcg@10")


def best_embedder_alone(results: dict) -> tuple[str, dict]:
    """The first-stage row (dense or fused, no reranker) with the highest nDCG@10."""
    alone = {name: row for name, row in results.items()
             if name.startswith("emb") and "_rr" not in name}
    name = max(alone, key=lambda n: (alone[n]["ndcg@10"], alone[n]["mrr@10"]))
    return name, alone[name]


def summarise(name: str, results: dict, selection: dict) -> dict:
    setup = results["setup"]
    stages = {stage: {m: row[m] for m in METRICS}
              for stage, row in setup["reranker"]["stages"].items()}
    chosen = selection["end_to_end"]["row"]
    baseline, baseline_row = best_embedder_alone(results)
    held_out = setup["held_out_check"]["mean"]
    return {
        "name": name, "seed": setup["reranker"]["config"]["seed"],
        "reranker_alone": stages,
        "selected": {"row": chosen, **{m: results[chosen][m] for m in METRICS}},
        "best_embedder_alone": {"row": baseline, **{m: baseline_row[m] for m in METRICS}},
        "bm25": {m: results["bm25"][m] for m in METRICS},
        "held_out": {"pipeline": held_out["pipeline"], "first_stage": held_out["first_stage"]},
    }


def spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}


def render(runs: list[dict], summary: dict) -> str:
    stage_names = list(runs[0]["reranker_alone"])
    lines = [
        "# Reranker grid over training seeds (STARD dev, 2,400-article subset)", "",
        f"{len(runs)} runs of `bench/reranker_grid_stard.py` that differ only in the reranker's "
        "training seed; each selects its stages and weight by the same rules and is held out "
        "the same way (dev halves of seed 13). MRR@10 / nDCG@10.", "",
        "## Reranker stages alone (re-ranking the embedder's dev top 20)", "",
        "| run | seed | " + " | ".join(stage_names) + " |",
        "|---|---|" + "---|" * len(stage_names)]
    for run in runs:
        cells = [f"{run['reranker_alone'][s]['mrr@10']:.4f} / {run['reranker_alone'][s]['ndcg@10']:.4f}"
                 for s in stage_names]
        lines.append(f"| [{run['name']}]({run['name']}.md) | {run['seed']} | " +
                     " | ".join(cells) + " |")
    lines += ["", "## Selected pipeline, end to end", "",
              "| seed | selected row | end to end | best embedder alone | gain | held out: "
              "pipeline | held out: its first stage | held-out gain |",
              "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        sel, base = run["selected"], run["best_embedder_alone"]
        pipe, first = run["held_out"]["pipeline"], run["held_out"]["first_stage"]
        lines.append(
            f"| {run['seed']} | {sel['row']} | {sel['mrr@10']:.4f} / {sel['ndcg@10']:.4f} | "
            f"{base['row']}: {base['mrr@10']:.4f} / {base['ndcg@10']:.4f} | "
            f"{sel['mrr@10'] - base['mrr@10']:+.4f} / {sel['ndcg@10'] - base['ndcg@10']:+.4f} | "
            f"{pipe['mrr@10']:.4f} / {pipe['ndcg@10']:.4f} | "
            f"{first['mrr@10']:.4f} / {first['ndcg@10']:.4f} | "
            f"{pipe['mrr@10'] - first['mrr@10']:+.4f} / {pipe['ndcg@10'] - first['ndcg@10']:+.4f} |")
    lines += ["", "## Over the seeds (mean, min – max)", "", "| quantity | MRR@10 | nDCG@10 |",
              "|---|---|---|"]
    for label, values in summary.items():
        lines.append(f"| {label} | " + " | ".join(
            f"{values[m]['mean']:+.4f} ({values[m]['min']:+.4f} – {values[m]['max']:+.4f})"
            if "gain" in label else
            f"{values[m]['mean']:.4f} ({values[m]['min']:.4f} – {values[m]['max']:.4f})"
            for m in METRICS) + " |")
    bm25 = runs[0]["bm25"]
    lines += ["", f"BM25 in the same runs: {bm25['mrr@10']:.4f} / {bm25['ndcg@10']:.4f}.", "",
              "Reproduce: the runs' own commands (in each report), then "
              "`python bench/reranker_seeds_stard.py`."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", default="reranker_grid_stard,reranker_grid_stard_seed14,"
                                           "reranker_grid_stard_seed15")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--out", default="reranker_grid_stard_seeds")
    args = parser.parse_args(argv)
    runs = []
    for name in args.names.split(","):
        path = args.results / f"{name}.json"
        if not path.is_file():
            raise SystemExit(f"{path}: not found (run bench/reranker_grid_stard.py --name {name})")
        selection = json.loads((args.results / f"{name}_selection.json").read_text(encoding="utf-8"))
        runs.append(summarise(name, json.loads(path.read_text(encoding="utf-8")), selection))
    summary = {}
    for stage in runs[0]["reranker_alone"]:
        summary[f"reranker {stage} alone"] = {
            m: spread([r["reranker_alone"][stage][m] for r in runs]) for m in METRICS}
    summary["selected pipeline"] = {m: spread([r["selected"][m] for r in runs]) for m in METRICS}
    summary["gain over the best embedder alone"] = {
        m: spread([r["selected"][m] - r["best_embedder_alone"][m] for r in runs]) for m in METRICS}
    summary["held-out gain over its first stage"] = {
        m: spread([r["held_out"]["pipeline"][m] - r["held_out"]["first_stage"][m] for r in runs])
        for m in METRICS}
    write_json_result(args.results / f"{args.out}.json", {"runs": runs, "summary": summary})
    markdown = render(runs, summary)
    write_markdown_result(args.results / f"{args.out}.md", markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
