"""A document's title, id and text are shown as written (issue 20, finding 10): neither read as
Textual markup (``[bold]``, ``[@click=app.quit]``) nor passed to the terminal as controls
(``ESC ] 0 ;`` retitles it)."""

from __future__ import annotations

import json

import pytest
from tui_support import make_app, type_query

from lexedge.runtime.index import Index
from lexedge.tui.widgets import Preview, ResultsTable

TITLE = "[@click=app.quit]民法[/] [bold]第九十条[/bold]\x1b]0;pwned\x07"
TEXT = "公の秩序又は善良の風俗に反する法律行為は、無効とする。\x1b[2J\x9b31m\u202e[@click=app.quit]x[/]"
TERMINAL_CONTROLS = {chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0),
                                      *range(0x202A, 0x202F), *range(0x2066, 0x206A))} - {"\n"}


@pytest.fixture
def hostile_index(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in [
        {"id": "d1", "title": TITLE, "text": TEXT},
        {"id": "d2", "title": "刑法 第百九十九条", "text": "人を殺した者は、死刑に処する。"}]),
        encoding="utf-8")
    Index.build(corpus, tmp_path / "idx", progress=False)
    return tmp_path / "idx"


def screen_lines(widget) -> list[str]:
    return [widget.render_line(y).text for y in range(widget.size.height)]


async def test_titles_and_texts_are_shown_as_written_never_as_markup_or_controls(hostile_index):
    app = make_app(index_path=hostile_index)
    async with app.run_test(size=(120, 30)) as pilot:
        await type_query(app, pilot, "公の秩序")
        assert app.result.hits[0].title == TITLE
        table = "\n".join(screen_lines(app.query_one(ResultsTable)))
        # the law and article columns, cut to their widths
        assert "[@click=app.quit]民" in table and "第九十条[/bold]␛]0;" in table
        assert not TERMINAL_CONTROLS & set(table)
        preview = str(app.query_one(Preview).query_one("#article").render())
        assert "[@click=app.quit]民法[/] [bold]第九十条[/bold]␛]0;pwned␇" in preview
        assert "無効とする。␛[2J\ufffd31m\ufffd[@click=app.quit]x[/]" in preview
        assert not TERMINAL_CONTROLS & set(preview)
        await pilot.press("tab", "tab", "c")  # to the results; copy the citation
        await pilot.pause()
        notification = list(app._notifications)[-1]
        assert notification.message == ("copied 「[@click=app.quit]民法[/] [bold]第九十条[/bold]"
                                        "␛]0;pwned␇」")
        assert not notification.markup
        assert app.is_running  # nothing clicked app.quit
