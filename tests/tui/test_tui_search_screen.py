"""Driving the search screen with the pilot at 80×24: type, see, select, turn the controls."""

from __future__ import annotations

from textual.widgets import Input
from tui_support import SIZE, RecordingSearcher, make_app, settle, type_query

from lexedge.runtime.settings import SearchSettings
from lexedge.tui.screens import HelpScreen, key_table
from lexedge.tui.widgets import Preview, ResultsTable


def preview_text(app) -> str:
    return str(app.query_one(Preview).query_one("#article").render())


async def test_typing_a_query_shows_results_and_the_best_article(tiny_index):
    app = make_app(index_path=tiny_index, debounce=0.25)  # the real debounce
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press(*"損害を賠償する責任")
        await settle(app, pilot)
        table = app.query_one(ResultsTable)
        assert table.row_count >= 1
        assert app.result.hits[0].title == "民法 第七百九条"
        assert "民法 第七百九条" in preview_text(app)
        assert f"{len(app.result.hits)} hits in" in str(app.query_one("#status").render())


async def test_moving_the_selection_previews_that_article(tiny_index):
    app = make_app(index_path=tiny_index)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await type_query(app, pilot, "民法 法律")
        assert len(app.result.hits) >= 2
        await pilot.press("tab", "tab", "down")  # search box → filter → results; one down
        assert app.query_one(ResultsTable).has_focus
        second = app.result.hits[1]
        assert app.selected_hit is second
        assert second.title in preview_text(app)


async def test_preview_shows_the_neighbouring_articles_of_the_same_law(tiny_index):
    app = make_app(index_path=tiny_index)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await type_query(app, pilot, "公の秩序")
        assert app.selected_hit.title == "民法 第九十条"
        text = preview_text(app)
        assert "next: 民法 第七百九条" in text  # the following row, also 民法
        assert "previous:" not in text  # the first row has none


async def test_budget_keys_change_k_and_rerun_the_search(tiny_index):
    searcher = RecordingSearcher(tiny_index)
    app = make_app(searcher=searcher)
    async with app.run_test(size=SIZE) as pilot:
        await type_query(app, pilot, "民法")
        assert searcher.calls[-1][1].budget == 50  # typing: capped at the live budget
        await pilot.press("right_square_bracket")  # works while the search box has focus
        await settle(app, pilot)
        assert app.controls.settings.budget == 200
        assert searcher.calls[-1][0] == "民法"
        assert searcher.calls[-1][1].budget == 200
        await pilot.press("left_square_bracket", "left_square_bracket")
        await settle(app, pilot)
        assert searcher.calls[-1][1].budget == 50
        assert "K ◂ 50 ▸" in str(app.query_one("#controls").render())
        assert app.query_one("#query", Input).value == "民法"  # the keys were not typed


async def test_enter_searches_at_the_full_budget_with_reranking(tiny_index):
    searcher = RecordingSearcher(tiny_index, has_reranker=True)
    app = make_app(searcher=searcher)
    async with app.run_test(size=SIZE) as pilot:
        await type_query(app, pilot, "民法")
        assert searcher.calls[-1][1].rerank == 0  # typing: no cross-encoder
        await pilot.press("enter")
        await settle(app, pilot)
        assert searcher.calls[-1][1].budget == SearchSettings().budget
        assert searcher.calls[-1][1].rerank == SearchSettings().rerank


async def test_ctrl_r_toggles_reranking(tiny_index):
    searcher = RecordingSearcher(tiny_index, has_reranker=True)
    app = make_app(searcher=searcher)
    async with app.run_test(size=SIZE) as pilot:
        await type_query(app, pilot, "民法")
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        assert app.controls.rerank_on is False
        assert searcher.calls[-1][1].rerank == 0
        assert "rerank off" in str(app.query_one("#controls").render())
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        assert searcher.calls[-1][1].rerank == SearchSettings().rerank  # N kept while off


async def test_reranking_key_explains_a_bm25_only_index(tiny_index):
    app = make_app(index_path=tiny_index)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert app.controls.rerank_on is True  # nothing to turn off
        assert any("BM25 only" in n.message for n in app._notifications)
        assert "BM25 only" in str(app.query_one("#status").render())


async def test_filter_box_limits_results_to_one_law(tiny_index):
    app = make_app(index_path=tiny_index)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await type_query(app, pilot, "法律 権利 個人データ")
        assert {h.title.split()[0] for h in app.result.hits} != {"民法"}
        await pilot.press("ctrl+f")
        assert app.query_one("#filter").has_focus
        await type_query(app, pilot, "民法", box="#filter")
        assert app.controls.settings.filters == {"title": "民法 *"}
        assert app.result.hits
        assert {h.title.split()[0] for h in app.result.hits} == {"民法"}


async def test_copy_citation_and_text(tiny_index):
    app = make_app(index_path=tiny_index)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await type_query(app, pilot, "公の秩序")
        await pilot.press("ctrl+y")
        assert app.clipboard == "民法 第九十条"
        await pilot.press("ctrl+t")
        assert app.clipboard.startswith("民法 第九十条\n公の秩序")


async def test_up_and_down_recall_earlier_queries(tiny_index):
    app = make_app(index_path=tiny_index)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        box = app.query_one("#query", Input)
        await type_query(app, pilot, "民法")
        await pilot.press("enter")
        box.value = ""
        await type_query(app, pilot, "刑法")
        await pilot.press("enter")
        box.value = ""
        await settle(app, pilot)
        await pilot.press("up")
        assert box.value == "刑法"
        await pilot.press("up")
        assert box.value == "民法"
        await pilot.press("down", "down")
        assert box.value == ""


async def test_help_lists_every_key_and_closes(tiny_index):
    app = make_app(index_path=tiny_index)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        shown = "\n".join(str(s.render()) for s in app.screen.query("Static"))
        for binding in app.BINDINGS:
            assert (binding.tooltip or binding.description) in shown
        assert all(description in shown for _, description in key_table(app))
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_theme_key_switches_light_and_dark(tiny_index):
    app = make_app(index_path=tiny_index)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        dark = app.current_theme.dark
        await pilot.press("f2")
        assert app.current_theme.dark is not dark


async def test_q_is_typed_in_the_search_box_but_quits_elsewhere(tiny_index):
    app = make_app(index_path=tiny_index)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("q")
        assert app.query_one("#query", Input).value == "q"
        assert app.is_running
        await pilot.press("tab", "tab", "q")  # the results table has focus now
        await pilot.pause()
        assert not app.is_running
    assert app.return_code == 0


async def test_ctrl_q_quits_from_the_search_box(tiny_index):
    app = make_app(index_path=tiny_index)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert not app.is_running


async def test_mouse_clicks_the_budget_arrow_and_a_result(tiny_index):
    app = make_app(index_path=tiny_index)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await type_query(app, pilot, "民法 法律")
        await pilot.click("#controls", offset=(9, 0))  # "K ◂ 100 ▸": the ▸
        await settle(app, pilot)
        assert app.controls.settings.budget == 200
        await pilot.click(ResultsTable, offset=(10, 2))  # header, row 1, row 2
        await pilot.pause()
        assert app.selected_hit is app.result.hits[1]
