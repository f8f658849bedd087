"""Helpers shared by the TUI tests: a searcher stand-in, waiting for searches, snapshots."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from lexedge.runtime.searcher import Searcher
from lexedge.runtime.settings import SearchSettings
from lexedge.tui.app import LexedgeApp

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE_SNAPSHOTS = os.environ.get("LEXEDGE_UPDATE_SNAPSHOTS") == "1"
SIZE = (80, 24)


class RecordingSearcher:
    """A :class:`Searcher` stand-in with the same interface: it records every call, can take
    ``delay`` seconds per search (a slow laptop, a big budget), or wait until ``gate`` is set,
    and can claim a reranker."""

    def __init__(self, index_path, delay: float = 0.0, has_reranker: bool = False,
                 gate: threading.Event | None = None):
        self.inner = Searcher(index_path)
        self.index = self.inner.index
        self.delay = delay
        self.gate = gate
        self.has_dense = False
        self.alpha = self.inner.alpha
        self.has_reranker = has_reranker
        self.calls: list[tuple[str, SearchSettings]] = []
        self.in_flight = threading.Event()

    def search(self, query: str, settings: SearchSettings | None = None, **overrides):
        settings = (settings or SearchSettings()).replace(**overrides)
        self.calls.append((query, settings))
        self.in_flight.set()
        try:
            time.sleep(self.delay)
            if self.gate is not None:
                self.gate.wait(timeout=60)
            return self.inner.search(query, settings)
        finally:
            self.in_flight.clear()


FAST_DEBOUNCE = 0.02  # the real 0.25 s is kept by the tests of typing itself


def make_app(**arguments) -> LexedgeApp:
    """The app as the tests run it: deterministic screens, a short debounce."""
    return LexedgeApp(test_mode=True, debounce=arguments.pop("debounce", FAST_DEBOUNCE),
                      **arguments)


async def wait_for_workers(app) -> None:
    """Wait for every worker; a superseded (cancelled) search is not a failure."""
    await asyncio.gather(*(worker.wait() for worker in app.workers), return_exceptions=True)


async def settle(app, pilot) -> None:
    """Let the debounce fire and every search finish, then let the screen update."""
    await pilot.pause(app.debounce + 0.02)
    await wait_for_workers(app)
    await pilot.pause()


async def type_query(app, pilot, text: str, box: str = "#query") -> None:
    """Put ``text`` in a box as a paste would (one change), then wait for its search."""
    app.query_one(box).value = text
    await settle(app, pilot)


def assert_snapshot(app, name: str, tmp_path: Path) -> None:
    """Compare the screen with ``snapshots/NAME.svg``; ``LEXEDGE_UPDATE_SNAPSHOTS=1``
    rewrites it (review the SVG before committing it)."""
    svg = app.export_screenshot(title="lexedge")
    expected = SNAPSHOTS / f"{name}.svg"
    if UPDATE_SNAPSHOTS:
        expected.parent.mkdir(exist_ok=True)
        expected.write_text(svg, encoding="utf-8")
        return
    if not expected.is_file():
        pytest.fail(f"no snapshot {expected}; make it with LEXEDGE_UPDATE_SNAPSHOTS=1 pytest "
                    "tests/tui")
    if svg != expected.read_text(encoding="utf-8"):
        actual = tmp_path / f"{name}.actual.svg"
        actual.write_text(svg, encoding="utf-8")
        pytest.fail(f"screen differs from {expected}: see {actual} (if the change is meant, "
                    "regenerate with LEXEDGE_UPDATE_SNAPSHOTS=1 pytest tests/tui)")
