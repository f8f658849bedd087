"""``lexedge tui --server URL`` (issue 22): the terminal UI searches a running ``lexedge
serve`` as it searches a local index: the same hits, the article with its neighbours."""

from __future__ import annotations

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from support.service import running  # noqa: E402
from tui_support import SIZE, settle, type_query  # noqa: E402

from lexedge.runtime.searcher import Searcher  # noqa: E402
from lexedge.tui.app import LexedgeApp  # noqa: E402
from lexedge.tui.widgets import Preview  # noqa: E402


async def test_the_tui_searches_a_service_as_it_searches_the_index(tiny_index):
    local = Searcher(tiny_index).search("公の秩序", budget=50, rerank=0)
    with running(tiny_index) as (url, _):
        app = LexedgeApp(server=url, test_mode=True, debounce=0.05)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            assert "6 documents" in str(app.query_one("#status").render())
            await type_query(app, pilot, "公の秩序")
            assert [h.id for h in app.result.hits] == [h.id for h in local.hits]
            assert app.selected_hit.title == "民法 第九十条"
            text = str(app.query_one(Preview).query_one("#article").render())
            assert "next: 民法 第七百九条" in text  # the neighbour, fetched from the service


async def test_a_service_that_refuses_the_tui_says_so(tiny_index):
    with running(tiny_index, token="s3cret") as (url, _):
        app = LexedgeApp(server=url, test_mode=True, debounce=0.05)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            assert app.searcher is None
            assert "401 missing or wrong bearer token" in str(app.screen.query_one(
                "#message-text").render())
