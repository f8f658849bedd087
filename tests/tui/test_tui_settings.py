"""The budget ladder, alpha steps, and what typing vs Enter ask of the searcher."""

from lexedge.runtime.settings import SearchSettings
from lexedge.tui.settings import BUDGET_LADDER, LIVE_BUDGET, SearchControls


def test_budget_moves_along_the_ladder_and_stops_at_its_ends():
    controls = SearchControls(SearchSettings(budget=100))
    assert controls.step_budget(+1) == 200
    controls.settings = controls.settings.replace(budget=150)  # from the command line
    assert controls.step_budget(-1) == 100
    for _ in BUDGET_LADDER:
        controls.step_budget(-1)
    assert controls.settings.budget == BUDGET_LADDER[0]
    assert controls.budget_gauge() == "▮▯▯▯▯▯▯"


def test_alpha_stays_between_zero_and_one():
    controls = SearchControls(SearchSettings(alpha=0.95))
    assert controls.step_alpha(+1) == 1.0
    controls.settings = controls.settings.replace(alpha=0.05)
    assert controls.step_alpha(-1) == 0.0


def test_typing_caps_the_budget_and_skips_the_reranker():
    controls = SearchControls(SearchSettings(budget=500, rerank=30))
    assert controls.request(live=True).budget == LIVE_BUDGET
    assert controls.request(live=True).rerank == 0
    assert controls.request(live=False).budget == 500
    assert controls.request(live=False).rerank == 30
    controls.toggle_rerank()
    assert controls.request(live=False).rerank == 0
    controls.toggle_rerank()
    assert controls.request(live=False).rerank == 30  # N was kept while it was off


def test_rerank_zero_from_the_command_line_starts_with_reranking_off():
    controls = SearchControls.starting_from(SearchSettings(rerank=0))
    assert controls.rerank_on is False and controls.request(live=False).rerank == 0
    controls.toggle_rerank()
    assert controls.request(live=False).rerank == SearchSettings().rerank


def test_the_tui_starts_from_the_runtime_defaults():
    settings = SearchControls().settings
    assert settings.replace(top=SearchSettings().top) == SearchSettings()
