"""A search in flight never holds up the keyboard: searches run in an exclusive worker
thread, and a stale search's answer is dropped (issue #7).

The first search is held open until the test lets it go, so the property is checked without
timing anything: keys typed while it is blocked must still reach the input box."""

from __future__ import annotations

import threading

from textual.widgets import Input
from tui_support import SIZE, RecordingSearcher, make_app, settle

DEBOUNCE_SECONDS = 0.5  # longer than two key presses: "賠償" makes one search


async def test_input_accepts_keys_while_a_slow_search_is_in_flight(tiny_index):
    release = threading.Event()
    searcher = RecordingSearcher(tiny_index, gate=release)
    app = make_app(searcher=searcher, debounce=DEBOUNCE_SECONDS)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one("#query", Input).value = "損害"
        for _ in range(200):  # the debounce fires, the first search starts and blocks
            if searcher.in_flight.is_set():
                break
            await pilot.pause(0.05)
        assert searcher.in_flight.is_set()
        await pilot.press(*"賠償")
        assert app.query_one("#query", Input).value == "損害賠償"
        assert searcher.in_flight.is_set() and not release.is_set(), \
            "the keys were taken while the first search was still blocked"
        release.set()
        await settle(app, pilot)  # the second search (started by the debounce) finishes
        assert [query for query, _ in searcher.calls] == ["損害", "損害賠償"]
        assert app.result.query == "損害賠償"  # the stale answer was not shown
