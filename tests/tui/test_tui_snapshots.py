"""SVG snapshots of the main screens at 80×24 (latency masked, no cursor blink), compared
with ``snapshots/*.svg``. Regenerate after a deliberate change with
``LEXEDGE_UPDATE_SNAPSHOTS=1 pytest tests/tui`` and review the SVGs before committing."""

from __future__ import annotations

from tui_support import SIZE, assert_snapshot, make_app, settle, type_query

QUERY = "個人データを第三者に提供"


async def test_results_screen_dark(tiny_index, tmp_path):
    app = make_app(index_path=tiny_index)
    async with app.run_test(size=SIZE) as pilot:
        app.theme = "textual-dark"
        await settle(app, pilot)
        await type_query(app, pilot, QUERY)
        assert_snapshot(app, "results_dark", tmp_path)


async def test_results_screen_light(tiny_index, tmp_path):
    app = make_app(index_path=tiny_index)
    async with app.run_test(size=SIZE) as pilot:
        app.theme = "textual-light"
        await settle(app, pilot)
        await type_query(app, pilot, QUERY)
        await pilot.press("enter")
        await settle(app, pilot)
        assert_snapshot(app, "results_light", tmp_path)


async def test_help_screen(tiny_index, tmp_path):
    app = make_app(index_path=tiny_index)
    async with app.run_test(size=SIZE) as pilot:
        app.theme = "textual-dark"
        await settle(app, pilot)
        await pilot.press("f1")
        await pilot.pause()
        assert_snapshot(app, "help", tmp_path)


async def test_missing_index_screen(tmp_path):
    app = make_app(index_path="/nonexistent/lexedge-index")
    async with app.run_test(size=SIZE) as pilot:
        app.theme = "textual-dark"
        await settle(app, pilot)
        assert_snapshot(app, "missing_index", tmp_path)
