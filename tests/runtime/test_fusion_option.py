"""``fusion="rrf"`` reaches :func:`lexedge.runtime.fusion.rrf_fusion` on every path the option
travels: ``Searcher.search``, ``lexedge search --fusion rrf``, ``lexedge eval --fusion rrf``
and ``lexedge tui --fusion rrf``. A path that dropped it would serve the weighted fusion
without a word, so each test compares the served order with both fusions computed directly
on the same dense and BM25 lists, for a query whose two orders differ (issue 18, item 5)."""

from __future__ import annotations

import json

import pytest

from lexedge.cli import main
from lexedge.runtime.bundle import Bundle
from lexedge.runtime.fusion import rrf_fusion, weighted_fusion
from lexedge.runtime.index import Index
from lexedge.runtime.searcher import Searcher
from lexedge.runtime.settings import DEFAULT_ALPHA, SearchSettings

#: Query q2 of the tiny dataset (judged in its dev split, so ``lexedge eval`` runs it).
QUERY_ID = "q2"
QUERY = "他人の権利を侵害した場合の損害賠償責任"
#: Every article of the tiny corpus: both retrievers return their whole list.
BUDGET = 6


@pytest.fixture
def served_index(tiny_dataset, tiny_bundle, tmp_path):
    return Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx",
                       bundle=Bundle.load(tiny_bundle), progress=False)


def reference(index, query: str, budget: int) -> dict[str, list[tuple[str, float]]]:
    """Both fusions of the index's own dense and BM25 top-``budget`` lists for ``query``."""
    lexical = index.bm25.search(query, budget)
    vector = index.bundle.embedder().encode([query], kind="query")
    rows, scores = index.dense.search(vector, budget)
    dense = [(index.docs.id_of(int(r)), float(s)) for r, s in zip(rows[0], scores[0])]
    lists = {"dense": dense, "bm25": lexical}
    alpha = DEFAULT_ALPHA  # the tiny bundle records no weight of its own
    return {"rrf": rrf_fusion(lists, budget),
            "weighted": weighted_fusion(lists, {"dense": alpha, "bm25": 1.0 - alpha}, budget)}


def order(ranking) -> list[str]:
    return [doc for doc, _ in ranking]


def assert_served(fusion: str, served: list[str], fused: dict) -> None:
    assert served == order(fused[fusion]), (
        f"asked for {fusion}, served {served}; rrf orders {order(fused['rrf'])}, weighted "
        f"{order(fused['weighted'])}")


@pytest.fixture
def expected(served_index):
    fused = reference(served_index, QUERY, BUDGET)
    # the case tells the two apart; otherwise none of these tests could fail
    assert order(fused["rrf"]) != order(fused["weighted"])
    return fused


def test_rrf_fusion_is_used_when_asked(served_index, expected):
    searcher = Searcher(served_index)
    for asked in (searcher.search(QUERY, fusion="rrf", rerank=0, budget=BUDGET, top=BUDGET),
                  searcher.search(QUERY, SearchSettings(fusion="rrf", rerank=0, budget=BUDGET,
                                                        top=BUDGET))):
        assert_served("rrf", [h.id for h in asked.hits], expected)
        assert [h.score for h in asked.hits] == pytest.approx(
            [score for _, score in expected["rrf"]])
        assert asked.settings["fusion"] == "rrf"
    default = searcher.search(QUERY, rerank=0, budget=BUDGET, top=BUDGET)
    assert_served("weighted", [h.id for h in default.hits], expected)


def test_lexedge_search_fusion_rrf_prints_the_rrf_order(served_index, expected, capsys):
    common = ["search", QUERY, "--index", str(served_index.path), "--rerank", "0",
              "--budget", str(BUDGET), "--top", str(BUDGET), "--json"]
    printed = {}
    for fusion in ("rrf", "weighted"):
        assert main(common + ["--fusion", fusion]) == 0
        printed[fusion] = json.loads(capsys.readouterr().out)
    for fusion in ("rrf", "weighted"):
        assert_served(fusion, [h["id"] for h in printed[fusion]["hits"]], expected)
        assert printed[fusion]["settings"]["fusion"] == fusion


def test_lexedge_eval_fusion_rrf_ranks_with_rrf(served_index, tiny_dataset, tmp_path, capsys):
    from lexedge.runtime.evaluation import RUN_DEPTH

    # eval's served methods search as deep as the run (Recall@K up to RUN_DEPTH)
    fused = reference(served_index, QUERY, RUN_DEPTH)
    assert order(fused["rrf"]) != order(fused["weighted"])
    ranked, reported = {}, {}
    for fusion in ("rrf", "weighted"):
        run, metrics = tmp_path / f"{fusion}.trec", tmp_path / f"{fusion}.json"
        assert main(["eval", str(tiny_dataset), "--method", "hybrid", "--index",
                     str(served_index.path), "--fusion", fusion, "--run-out", str(run),
                     "--metrics-out", str(metrics)]) == 0
        lines = [line.split() for line in run.read_text(encoding="utf-8").splitlines()]
        ranked[fusion] = [doc for query_id, _, doc, *_ in lines if query_id == QUERY_ID]
        reported[fusion] = json.loads(metrics.read_text(encoding="utf-8"))["fusion"]
    capsys.readouterr()
    for fusion in ("rrf", "weighted"):
        assert_served(fusion, ranked[fusion], fused)
    assert reported == {"rrf": "rrf", "weighted": "weighted"}


@pytest.mark.parametrize("start", [[], ["--rerank", "0"]])
def test_lexedge_tui_fusion_rrf_searches_with_rrf_whatever_the_keys_change(
        served_index, monkeypatch, start):
    pytest.importorskip("textual")
    from lexedge.tui.app import LexedgeApp

    started = []
    monkeypatch.setattr(LexedgeApp, "run", lambda app, *a, **k: started.append(app))
    assert main(["tui", "--index", str(served_index.path), "--fusion", "rrf", *start]) == 0
    controls = started[0].controls
    requests = [controls.request(live=True), controls.request(live=False)]
    controls.step_budget(+1)   # ]
    controls.step_alpha(-1)    # {
    controls.toggle_rerank()   # Ctrl-R
    controls.set_filters({"law": "民法"})
    requests += [controls.request(live=True), controls.request(live=False)]
    assert [r.fusion for r in requests] == ["rrf"] * len(requests), \
        "the TUI was started with --fusion rrf"


POOL_QUERIES = (QUERY, "契約の解除と損害賠償", "法律行為の無効", "個人情報の第三者提供")


def test_each_retriever_fetches_pool_times_the_budget(served_index, capsys):
    """``pool`` P: the fusion ranks each retriever's top P x K and keeps K; P = 1 fuses the two
    top-K lists alone. A query whose two answers differ tells the depths apart, on the API and
    on ``lexedge search --pool``."""
    budget, searcher = 2, Searcher(served_index)

    def fused(query, depth):
        return order(reference(served_index, query, depth)["weighted"])[:budget]

    query = next((q for q in POOL_QUERIES if fused(q, 3 * budget) != fused(q, budget)), None)
    assert query is not None, "no query tells pool 3 from pool 1 on the tiny corpus"
    for pool in (1, 3):
        served = searcher.search(query, rerank=0, budget=budget, pool=pool, top=budget)
        assert [h.id for h in served.hits] == fused(query, pool * budget), f"pool {pool}"
        assert served.settings["pool"] == pool
        assert main(["search", query, "--index", str(served_index.path), "--rerank", "0",
                     "--budget", str(budget), "--pool", str(pool), "--top", str(budget),
                     "--json"]) == 0
        printed = json.loads(capsys.readouterr().out)
        assert [h["id"] for h in printed["hits"]] == fused(query, pool * budget)
    assert SearchSettings().pool == 3
