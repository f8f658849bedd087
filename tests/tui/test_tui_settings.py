"""The budget ladder, alpha steps, and what typing vs Enter ask of the searcher."""

from lexedge.tui.settings import BUDGET_LADDER, LIVE_BUDGET, SearchSettings


def test_budget_moves_along_the_ladder_and_stops_at_its_ends():
    settings = SearchSettings(budget=100)
    assert settings.step_budget(+1) == 200
    settings.budget = 150  # from the command line, off the ladder
    assert settings.step_budget(-1) == 100
    for _ in BUDGET_LADDER:
        settings.step_budget(-1)
    assert settings.budget == BUDGET_LADDER[0]
    assert settings.budget_gauge() == "▮▯▯▯▯▯▯"


def test_alpha_stays_between_zero_and_one():
    settings = SearchSettings(alpha=0.95)
    assert settings.step_alpha(+1) == 1.0
    settings.alpha = 0.05
    assert settings.step_alpha(-1) == 0.0


def test_typing_caps_the_budget_and_skips_the_reranker():
    settings = SearchSettings(budget=500, rerank=True, rerank_depth=30)
    assert settings.search_arguments(live=True)["budget"] == LIVE_BUDGET
    assert settings.search_arguments(live=True)["rerank"] == 0
    assert settings.search_arguments(live=False)["budget"] == 500
    assert settings.search_arguments(live=False)["rerank"] == 30
    settings.rerank = False
    assert settings.search_arguments(live=False)["rerank"] == 0
