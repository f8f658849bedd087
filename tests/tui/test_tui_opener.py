"""Opening a source file: local files only, never a URL or a network share."""

import json

import pytest
from tui_support import SIZE, make_app, settle, type_query

from lexedge.runtime.errors import LexedgeError
from lexedge.tui.opener import source_path


@pytest.mark.parametrize("source", ["https://example.com/a.pdf", "file:///etc/passwd",
                                    "//server/share/a.txt", "\\\\server\\share\\a.txt"])
def test_urls_and_network_paths_are_refused(source):
    with pytest.raises(LexedgeError, match="local files only"):
        source_path({"source": source}, {})


def test_relative_source_is_found_beside_the_corpus(tmp_path):
    (tmp_path / "laws").mkdir()
    (tmp_path / "laws" / "minpo.txt").write_text("民法", encoding="utf-8")
    manifest = {"source": {"path": str(tmp_path / "corpus.jsonl")}}
    assert source_path({"source": "laws/minpo.txt"}, manifest) == tmp_path / "laws" / "minpo.txt"
    with pytest.raises(LexedgeError, match="not found"):
        source_path({"source": "laws/gone.txt"}, manifest)
    with pytest.raises(LexedgeError, match="no source file"):
        source_path({}, manifest)


async def test_open_key_hands_the_file_to_the_opener(tmp_path):
    from lexedge.runtime.index import Index

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "lease.txt").write_text("The tenant pays rent monthly.")
    records = [{"id": "c1", "title": "Clause 1", "text": "The tenant pays rent monthly.",
                "source": "docs/lease.txt"},
               {"id": "c2", "title": "Clause 2", "text": "The landlord repairs the roof.",
                "source": "https://example.com/terms"}]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    Index.build(corpus, tmp_path / "idx", progress=False)
    opened = []
    app = make_app(index_path=tmp_path / "idx", opener=opened.append)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await type_query(app, pilot, "tenant rent")
        await pilot.press("ctrl+o")
        assert opened == [(tmp_path / "docs" / "lease.txt").resolve()]
        await type_query(app, pilot, "landlord roof")
        await pilot.press("ctrl+o")
        assert len(opened) == 1  # the URL source was refused, with a notice


def test_a_folder_index_finds_its_files_in_that_folder(tmp_path):
    """The README's case (issue 23): `index build --docs ~/office/statutes`; a document's
    source `minpo.txt` is `~/office/statutes/minpo.txt`, not `~/office/minpo.txt`."""
    folder = tmp_path / "office" / "statutes"
    folder.mkdir(parents=True)
    (folder / "minpo.txt").write_text("民法", encoding="utf-8")
    manifest = {"source": {"path": str(folder)}}
    assert source_path({"source": "minpo.txt"}, manifest) == folder / "minpo.txt"
