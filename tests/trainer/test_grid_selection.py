"""The grid measures every embedder stage x reranker stage x budget, with and without BM25 in
the first stage; selection takes the argmax under each rule; export consumes the selection."""

import json

import pytest

from lexedge.runtime.errors import LexedgeError
from lexedge.trainer.selection.grid import GridConfig, run_grid
from lexedge.trainer.selection.select import SelectionRules, read_selection, select_stages

BUDGETS = [4, 8]
WEIGHTS = [1.0, 0.5, 0.0]


@pytest.fixture(scope="module")
def grid(reranker_run, tmp_path_factory):
    output, _, embedder_run = reranker_run
    out = tmp_path_factory.mktemp("grid")
    rows = run_grid(GridConfig(embedders=str(embedder_run), rerankers=str(output),
                               out=str(out), budgets=BUDGETS, rerank_weights=WEIGHTS,
                               device="cpu", progress=False),
                    log=lambda line: None)
    return out, rows


def test_grid_covers_every_pair_and_budget(grid):
    out, rows = grid
    assert json.loads((out / "grid.json").read_text()) == rows
    embedders, rerankers = ["0", "mlm", "1", "2", "3"], ["1", "2", "3"]
    assert set(rows["setup"]["embedders"]) == set(embedders)
    assert set(rows["setup"]["rerankers"]) == set(rerankers)
    for e in embedders:
        for first in (f"emb{e}", f"emb{e}+bm25"):
            assert first in rows
            for r in rerankers:
                for k in BUDGETS:
                    for key in [f"{first}_rr{r}_k{k}"] + [f"{first}_rr{r}_k{k}_w{w:g}"
                                                          for w in WEIGHTS if w < 1]:
                        row = rows[key]
                        # the reranker only re-orders the K candidates the first stage found
                        assert row[f"recall@{k}"] == pytest.approx(
                            _recall_of_first_stage(rows, first, k))
                        assert row["rerank_ms_per_query"] > 0
                        assert 0 <= row["ndcg@10"] <= 1
                # weight 0 keeps the first stage's own order (its row is as deep as K)
                assert rows[f"{first}_rr{r}_k{max(BUDGETS)}_w0"]["ndcg@10"] == pytest.approx(
                    rows[first]["ndcg@10"])
    assert rows["embedder_only"]["row"] in rows
    assert rows["bm25"]["queries"] == rows["emb3_rr3_k8"]["queries"]


def _recall_of_first_stage(rows, first, k):
    return rows[first][f"recall@{k}"]


def test_a_second_grid_run_reuses_the_cache(grid, reranker_run):
    out, rows = grid
    output, _, embedder_run = reranker_run
    [scores] = (out / ".cache").glob("scores_rr2-*.json")
    before = scores.stat().st_mtime_ns
    again = run_grid(GridConfig(embedders=str(embedder_run), rerankers=str(output),
                                out=str(out), budgets=BUDGETS, rerank_weights=WEIGHTS,
                                device="cpu", progress=False),
                     log=lambda line: None)
    assert scores.stat().st_mtime_ns == before
    assert again == rows


def test_a_retrained_stage_is_scored_afresh(grid, reranker_run, tmp_path):
    """The cache is named by the weights: a stage trained again (here: its adapter perturbed)
    gets its own scores, the stages below keep theirs."""
    import shutil

    from safetensors.torch import load_file, save_file

    out, rows = grid
    output, _, embedder_run = reranker_run
    copy = tmp_path / "run"
    shutil.copytree(output, copy)
    weights = copy / "stage3" / "adapter_model.safetensors"
    tensors = {name: t + 0.5 for name, t in load_file(weights).items()}
    save_file(tensors, weights)
    cache = tmp_path / "cache"
    shutil.copytree(out / ".cache", cache)
    again = run_grid(GridConfig(embedders=str(embedder_run), rerankers=str(copy),
                                out=str(tmp_path / "out"), budgets=BUDGETS,
                                rerank_weights=WEIGHTS, cache_dir=str(cache), device="cpu",
                                progress=False), log=lambda line: None)
    assert len(list(cache.glob("scores_rr3-*.json"))) == 2
    assert len(list(cache.glob("scores_rr2-*.json"))) == 1
    assert again["emb3_rr2_k8"] == {**rows["emb3_rr2_k8"], "reranker": str(copy / "stage2")}
    fresh = [json.loads(p.read_text())["scores"] for p in cache.glob("scores_rr3-*.json")]
    assert fresh[0].keys() == fresh[1].keys() and fresh[0] != fresh[1]


def test_grids_of_two_query_halves_average_to_the_whole(grid, reranker_run, tmp_path):
    """Measuring a subset of the queries (to check a selection on queries it was not made on)
    reuses the whole split's cache and splits every metric exactly."""
    out, rows = grid
    output, _, embedder_run = reranker_run
    ids = sorted(_judged_dev_queries(rows))
    halves = [ids[0::2], ids[1::2]]
    cache = out / ".cache"
    stamps = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    parts = [run_grid(GridConfig(embedders=str(embedder_run), rerankers=str(output),
                                 out=str(tmp_path / f"half{i}"), budgets=BUDGETS,
                                 rerank_weights=WEIGHTS, query_ids=half, cache_dir=str(cache),
                                 device="cpu", progress=False), log=lambda line: None)
             for i, half in enumerate(halves)]
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == stamps
    assert [p["setup"]["queries"] for p in parts] == [len(h) for h in halves]
    assert sum(p["bm25"]["queries"] for p in parts) == rows["bm25"]["queries"]
    for key in ("bm25", "emb3+bm25", "emb2_rr1_k8", "emb3+bm25_rr2_k4_w0.5"):
        for metric in ("mrr@10", "ndcg@10", "recall@4"):
            whole = rows[key][metric] * rows[key]["queries"]
            assert sum(part[key][metric] * part[key]["queries"] for part in parts) == \
                pytest.approx(whole)
    with pytest.raises(LexedgeError, match="none of the 1 query ids"):
        run_grid(GridConfig(embedders=str(embedder_run), rerankers=str(output),
                            out=str(tmp_path / "none"), budgets=BUDGETS, query_ids=["nope"],
                            cache_dir=str(cache), device="cpu", progress=False),
                 log=lambda line: None)


def test_grid_of_chosen_embedder_stages_scores_only_their_candidates(grid, reranker_run,
                                                                      tmp_path):
    """``embedder_stages`` leaves the other first stages out, and with them their pairs: the
    rows it keeps are the full grid's, measured from a fresh cache."""
    _, rows = grid
    output, _, embedder_run = reranker_run
    part = run_grid(GridConfig(embedders=str(embedder_run), rerankers=str(output),
                               out=str(tmp_path / "part"), budgets=[max(BUDGETS)],
                               rerank_weights=[1.0, 0.5], embedder_stages=["3"],
                               device="cpu", progress=False), log=lambda line: None)
    assert set(part["setup"]["embedders"]) == {"3"}
    assert not any(key.startswith(("emb0", "emb1", "emb2", "embmlm")) for key in part)
    k = max(BUDGETS)
    for key in ("emb3", "emb3+bm25", f"emb3_rr2_k{k}", f"emb3+bm25_rr3_k{k}_w0.5"):
        for metric in ("mrr@10", "ndcg@10", f"recall@{k}"):
            assert part[key][metric] == pytest.approx(rows[key][metric], abs=1e-6)
    [scored] = (tmp_path / "part" / ".cache").glob("scores_rr1-*.json")
    scored = json.loads(scored.read_text())
    assert len(scored["scores"]) <= 2 * k * part["bm25"]["queries"]  # emb3 and emb3+bm25 only
    with pytest.raises(LexedgeError, match=r"embedder stages \['7'\] not in"):
        run_grid(GridConfig(embedders=str(embedder_run), rerankers=str(output),
                            out=str(tmp_path / "bad"), embedder_stages=["7"], device="cpu",
                            progress=False), log=lambda line: None)


def _judged_dev_queries(rows):
    from lexedge.runtime.datasets import BeirDataset

    dataset = BeirDataset(rows["setup"]["data_dir"])
    return list(dataset.qrels("dev", query_ids=dataset.queries()))


def test_selection_is_the_argmax_of_each_rule(grid):
    out, rows = grid
    selection = select_stages(out, SelectionRules(budget=8))
    embedders = rows["setup"]["embedders"]
    best_recall = max(rows[f"emb{e}"]["recall@8"] for e in embedders)
    assert rows[f"emb{selection['embedder']['stage']}"]["recall@8"] == best_recall
    first = f"emb{selection['embedder']['stage']}" + \
        ("+bm25" if selection["first_stage"] == "hybrid" else "")
    keys = {(r, w): f"{first}_rr{r}_k8" + ("" if w == 1.0 else f"_w{w:g}")
            for r in rows["setup"]["rerankers"] for w in WEIGHTS}
    best_ndcg = max(rows[key]["ndcg@10"] for key in keys.values())
    chosen = selection["reranker"] or selection["reranker_rejected"]
    assert rows[keys[chosen["stage"], chosen["rerank_weight"]]]["ndcg@10"] == best_ndcg
    # kept exactly when it beats the first stage alone
    assert (selection["reranker"] is not None) == (best_ndcg > rows[first]["ndcg@10"])
    assert json.loads((out / "selection.json").read_text()) == selection
    assert read_selection(out / "selection.json")["embedder"]["path"] == \
        rows["setup"]["embedders"][selection["embedder"]["stage"]]


def test_selection_follows_the_numbers_of_a_hand_made_grid(tmp_path):
    """Embedder 3 wins Recall@100 alone; behind it, reranker 2 wins nDCG@10 although reranker
    3 wins MRR@10: the mixed-stage choice of 2602.00805."""
    def row(recall, mrr, ndcg):
        return {"recall@100": recall, "mrr@10": mrr, "ndcg@10": ndcg, "recall@10": 0.5,
                "rerank_ms_per_query": 10.0}

    grid = {"setup": {"budgets": [100], "alpha": 0.5,
                      "embedders": {"1": "/e/stage1", "3": "/e/stage3"},
                      "rerankers": {"2": "/r/stage2", "3": "/r/stage3"}},
            "bm25": row(0.6, 0.3, 0.3), "embedder_only": row(0.8, 0.4, 0.4),
            "emb1": row(0.7, 0.5, 0.5), "emb1+bm25": row(0.75, 0.5, 0.5),
            "emb3": row(0.8, 0.4, 0.4), "emb3+bm25": row(0.85, 0.4, 0.4)}
    for first in ("emb1", "emb1+bm25", "emb3", "emb3+bm25"):
        grid[f"{first}_rr2_k100"] = row(0, 0.5, 0.62)
        grid[f"{first}_rr3_k100"] = row(0, 0.55, 0.60)
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    selection = select_stages(tmp_path)
    assert selection["embedder"] == {"stage": "3", "path": "/e/stage3"}
    assert selection["first_stage"] == "hybrid"
    assert selection["reranker"] == {"stage": "2", "path": "/r/stage2", "rerank_weight": 1.0}
    by_mrr = select_stages(tmp_path, SelectionRules(reranker_metric="mrr@10"))
    assert by_mrr["reranker"]["stage"] == "3"
    # a measured weight below 1 that wins is chosen with its stage
    grid["setup"]["rerank_weights"] = [1.0, 0.3]
    for first in ("emb1", "emb1+bm25", "emb3", "emb3+bm25"):
        grid[f"{first}_rr2_k100_w0.3"] = row(0, 0.5, 0.61)
        grid[f"{first}_rr3_k100_w0.3"] = row(0, 0.56, 0.64)
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    assert select_stages(tmp_path)["reranker"] == {"stage": "3", "path": "/r/stage3",
                                                   "rerank_weight": 0.3}
    assert select_stages(tmp_path)["end_to_end"]["row"] == "emb3+bm25_rr3_k100_w0.3"
    del grid["setup"]["rerank_weights"]
    with pytest.raises(LexedgeError, match="budget 20 was not measured"):
        select_stages(tmp_path, SelectionRules(budget=20))
    # a reranker below its own first stage is not worth its latency: none is chosen
    for first in ("emb1", "emb1+bm25", "emb3", "emb3+bm25"):
        for r in ("2", "3"):
            grid[f"{first}_rr{r}_k100"]["ndcg@10"] = 0.35
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    selection = select_stages(tmp_path)
    assert selection["reranker"] is None
    assert selection["reranker_rejected"]["first_stage_alone"] == 0.4
    assert selection["end_to_end"]["row"] == "emb3+bm25"


def test_export_takes_its_stages_from_the_selection(grid, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from lexedge.cli import main

    out, rows = grid
    selection = select_stages(out, SelectionRules(budget=8))
    selection["reranker"] = {"stage": "2", "path": rows["setup"]["rerankers"]["2"],
                             "rerank_weight": 0.3}
    (tmp_path / "with.json").write_text(json.dumps(selection))
    selection["reranker"] = None
    (tmp_path / "without.json").write_text(json.dumps(selection))
    for name in ("with", "without"):
        bundle = tmp_path / f"bundle-{name}"
        code = main(["export", "--fp32", "--selection", str(tmp_path / f"{name}.json"),
                     "--out", str(bundle), "--calibration", rows["setup"]["data_dir"],
                     "--force"])
        assert code == 0
        manifest = json.loads((bundle / "manifest.json").read_text())
        assert manifest["embedder"]["source"]["path"] == selection["embedder"]["path"]
        if name == "with":
            assert manifest["reranker"]["source"]["path"] == rows["setup"]["rerankers"]["2"]
            assert manifest["reranker"]["rerank_weight"] == 0.3  # the runtime's default
        else:
            assert manifest["reranker"] is None


def test_grid_and_select_commands(reranker_run, tmp_path, capsys):
    from lexedge.cli import main

    output, _, embedder_run = reranker_run
    out = tmp_path / "grid"
    assert main(["grid", "--embedders", str(embedder_run), "--rerankers", str(output),
                 "--out", str(out), "--budgets", "4", "--rerank-weights", "1,0.5",
                 "--no-base", "--embedder-stages", "2,3", "--device", "cpu"]) == 0
    rows = json.loads((out / "grid.json").read_text())
    assert set(rows["setup"]["embedders"]) == {"2", "3"}
    assert rows["setup"]["rerank_weights"] == [1.0, 0.5]
    assert "emb3_rr2_k4_w0.5" in rows and "emb3_rr2_k4_w0.3" not in rows
    assert main(["select", "--runs", str(out), "--budget", "4"]) == 0
    assert (out / "selection.json").is_file()
    assert main(["grid", "--embedders", str(embedder_run), "--rerankers", str(output),
                 "--out", str(out), "--rerank-weights", "1,x"]) == 2
    assert "--rerank-weights '1,x'" in capsys.readouterr().err
