"""A search in flight never holds up the keyboard: searches run in an exclusive worker
thread, and a stale search's answer is dropped (issue #7)."""

from __future__ import annotations

import time

from textual.widgets import Input
from tui_support import SIZE, RecordingSearcher, make_app, settle

SEARCH_SECONDS = 1.0
KEYSTROKE_BUDGET_SECONDS = 0.5  # typing three characters while a search runs


async def test_input_accepts_keys_while_a_slow_search_is_in_flight(tiny_index):
    searcher = RecordingSearcher(tiny_index, delay=SEARCH_SECONDS)
    # A debounce longer than the typing budget: the two keystrokes below make one search.
    app = make_app(searcher=searcher, debounce=KEYSTROKE_BUDGET_SECONDS)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one("#query", Input).value = "損害"
        await pilot.pause(KEYSTROKE_BUDGET_SECONDS + 0.1)  # the first search starts, sleeps
        assert searcher.in_flight.is_set()
        started = time.perf_counter()
        await pilot.press(*"賠償")
        typing_seconds = time.perf_counter() - started
        assert app.query_one("#query", Input).value == "損害賠償"
        assert searcher.in_flight.is_set(), "the first search should still be running"
        assert typing_seconds < KEYSTROKE_BUDGET_SECONDS
        await settle(app, pilot)  # the second search (started by the debounce) finishes
        assert [query for query, _ in searcher.calls] == ["損害", "損害賠償"]
        assert app.result.query == "損害賠償"  # the stale answer was not shown
