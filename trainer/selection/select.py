"""Component-wise stage selection (2602.00805: the embedder and the reranker peak at different
stages, so each component takes its own best): ``lexedge select --runs OUT`` reads the grid
:mod:`lexedge.trainer.selection.grid` wrote (``OUT/grid.json``), applies one rule per
component, and writes ``OUT/selection.json``, which ``lexedge export --selection`` reads
(:func:`read_selection`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.settings import SearchSettings
from lexedge.runtime.storage import write_json_atomic
from lexedge.trainer.selection.grid import GRID_FILE, row_key

SELECTION_FILE = "selection.json"
SELECTION_FORMAT = "lexedge-selection/1"


@dataclass
class SelectionRules:
    """How each component's stage is chosen from the grid.

    Args:
        budget: the serving budget K (default: a search's, ``SearchSettings.budget``).
        embedder_metric: the embedder stage maximises this on its own at K (Recall@K: the
            reranker can only re-order what the first stage found).
        reranker_metric: the reranker stage maximises this end to end behind the chosen
            first stage at K.
    """

    budget: int = SearchSettings.budget
    embedder_metric: str = ""
    reranker_metric: str = "ndcg@10"

    def embedder_key(self) -> str:
        return self.embedder_metric or f"recall@{self.budget}"


def select_stages(grid_dir: str | Path, rules: SelectionRules | None = None) -> dict:
    """Choose the embedder stage, the first stage (dense or fused with BM25) and the reranker
    stage from ``grid_dir/grid.json``; write and return ``grid_dir/selection.json``. The
    reranker is ``None`` when no stage of it beats the chosen first stage alone."""
    rules = rules or SelectionRules()
    grid_dir = Path(grid_dir)
    path = grid_dir / GRID_FILE
    grid = _read_json(path, f"{grid_dir}: no {GRID_FILE}; run lexedge grid first")
    setup = grid.get("setup", {})
    budget, e_key, r_key = rules.budget, rules.embedder_key(), rules.reranker_metric
    if budget not in setup.get("budgets", []):
        raise LexedgeError(f"{path}: budget {budget} was not measured "
                           f"(budgets: {setup.get('budgets')})")
    embedders, rerankers = setup.get("embedders", {}), setup.get("rerankers", {})
    for key in (e_key, r_key):
        if key not in grid.get("bm25", {}):
            raise LexedgeError(f"{path}: no metric {key!r} in the grid's rows")

    def order(label: str):  # ties go to the earlier stage: less training, same quality
        return ["0", "mlm", "1", "2", "3"].index(label) if label in ("0", "mlm", "1", "2", "3") \
            else 99

    embedder_table = [{"stage": e, e_key: grid[f"emb{e}"][e_key],
                       "mrr@10": grid[f"emb{e}"]["mrr@10"]} for e in embedders]
    embedder = max(embedder_table, key=lambda r: (r[e_key], r["mrr@10"], -order(r["stage"])))
    e = embedder["stage"]
    fusion_table = [{"first_stage": name, e_key: grid[name][e_key],
                     "mrr@10": grid[name]["mrr@10"]} for name in (f"emb{e}", f"emb{e}+bm25")]
    first = max(fusion_table, key=lambda r: (r[e_key], r["mrr@10"]))["first_stage"]
    reranker_table = [{"stage": r, "rerank_weight": w, "row": row_key(first, r, budget, w),
                       r_key: grid[row_key(first, r, budget, w)][r_key],
                       "mrr@10": grid[row_key(first, r, budget, w)]["mrr@10"]}
                      for r in rerankers for w in setup.get("rerank_weights", [1.0])
                      if row_key(first, r, budget, w) in grid]
    # Ties: MRR@10, then the earlier stage, then the larger reranker weight.
    reranker = max(reranker_table, key=lambda r: (r[r_key], r["mrr@10"], -order(r["stage"]),
                                                  r["rerank_weight"]))
    # A reranker that does not beat its own first stage is not worth its latency.
    helps = reranker[r_key] > grid[first][r_key]
    chosen_row = reranker["row"] if helps else first
    selection = {
        "format": SELECTION_FORMAT,
        "grid": str(path.resolve()),
        "budget": budget,
        "first_stage": "hybrid" if first.endswith("+bm25") else "dense",
        "alpha": setup.get("alpha") if first.endswith("+bm25") else 1.0,
        "embedder": {"stage": e, "path": embedders[e]},
        "reranker": {"stage": reranker["stage"], "path": rerankers[reranker["stage"]],
                     "rerank_weight": reranker["rerank_weight"]} if helps else None,
        "reranker_rejected": None if helps else {
            "stage": reranker["stage"], "rerank_weight": reranker["rerank_weight"],
            r_key: reranker[r_key],
            "first_stage_alone": grid[first][r_key],
            "reason": f"the best reranker stage does not raise {r_key} above the first "
                      "stage alone"},
        "rules": {"embedder": f"max {e_key} of the embedder alone (ties: MRR@10, then the "
                              "earlier stage)",
                  "first_stage": f"dense or fused with BM25, max {e_key} for that embedder",
                  "reranker": f"max end-to-end {r_key} over reranker stage x reranker "
                              f"weight behind the chosen first stage at K = {budget} (ties: "
                              f"MRR@10, the earlier stage, the larger weight), kept only if "
                              f"above the first stage alone"},
        "tables": {"embedder": embedder_table, "first_stage": fusion_table,
                   "reranker": reranker_table},
        "end_to_end": {"row": chosen_row, **{k: grid[chosen_row].get(k, 0.0) for k in
                                             ("recall@10", f"recall@{budget}", "mrr@10",
                                              "ndcg@10", "rerank_ms_per_query")}},
        "baselines": {name: {k: grid[name][k] for k in ("mrr@10", "ndcg@10")}
                      for name in ("bm25", "embedder_only")},
    }
    write_json_atomic(grid_dir / SELECTION_FILE, selection)
    return selection


def read_selection(path: str | Path) -> dict:
    """A ``selection.json``, checked: its format and the stage paths export needs."""
    path = Path(path)
    selection = _read_json(path, f"{path}: selection file not found")
    if selection.get("format") != SELECTION_FORMAT:
        raise LexedgeError(f"{path}: format is {selection.get('format')!r}, expected "
                           f"{SELECTION_FORMAT!r}")
    if not (selection.get("embedder") or {}).get("path"):
        raise LexedgeError(f"{path}: field embedder.path is missing")
    reranker = selection.get("reranker")
    if reranker is not None and not reranker.get("path"):
        raise LexedgeError(f"{path}: field reranker.path is missing (null: no reranker)")
    return selection


def _read_json(path: Path, missing: str) -> dict:
    if not path.is_file():
        raise LexedgeError(missing)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LexedgeError(f"{path}: malformed JSON ({exc.msg}, line {exc.lineno})") from None
