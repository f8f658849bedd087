"""An index that cannot be used gets a plain message screen, never a traceback."""

from __future__ import annotations

import shutil

from tui_support import SIZE, RecordingSearcher, make_app

from lexedge.tui.screens import MessageScreen


def message_of(app) -> str:
    return str(app.screen.query_one("#message-text").render())


async def test_missing_index_shows_a_message_and_q_quits(tmp_path):
    app = make_app(index_path=tmp_path / "no-such-index")
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, MessageScreen)
        assert "not a lexedge index" in message_of(app)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 2


async def test_index_bound_to_a_missing_bundle_shows_a_message(tiny_dataset, tiny_bundle,
                                                                tmp_path):
    from lexedge.runtime.bundle import Bundle
    from lexedge.runtime.index import Index

    Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx", progress=False,
                bundle=Bundle.load(tiny_bundle))
    shutil.rmtree(tiny_bundle)  # the bundle the index records is gone
    app = make_app(index_path=tmp_path / "idx")
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, MessageScreen)
        assert "its bundle is no longer at" in message_of(app)
        assert "--bundle DIR" in message_of(app)


async def test_empty_folder_shows_a_message(tmp_path):
    (tmp_path / "idx").mkdir()
    app = make_app(index_path=tmp_path / "idx")
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, MessageScreen)
        assert "build one with `lexedge index build`" in message_of(app)


async def test_index_without_documents_shows_a_message(tiny_index):
    searcher = RecordingSearcher(tiny_index)
    searcher.index = type("EmptyIndex", (), {"path": tiny_index, "__len__": lambda self: 0})()
    app = make_app(searcher=searcher)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, MessageScreen)
        assert "the index is empty" in message_of(app)
