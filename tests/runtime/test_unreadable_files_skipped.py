"""A damaged .pdf or .docx in a folder is skipped with a warning and a summary; the rest of the
folder is indexed (issue 23). A text file that is not text is still refused (issue 20)."""

from pathlib import Path

import pytest

from lexedge.cli import main
from lexedge.runtime.index import Index


@pytest.mark.parametrize("name, reader", [("broken.pdf", "pypdf"), ("broken.docx", "docx")])
def test_a_damaged_document_is_skipped_and_named(tmp_path, capsys, name, reader):
    pytest.importorskip(reader)
    folder = tmp_path / "office"
    folder.mkdir()
    (folder / "minpo.txt").write_text("第一条　私権は、公共の福祉に適合しなければならない。\n"
                                      "第二条　この法律は、個人の尊厳と両性の本質的平等を旨として、"
                                      "解釈しなければならない。\n", encoding="utf-8")
    (folder / name).write_bytes(b"this is not a real document \x00\x01\x02" * 20)
    assert main(["index", "build", "--docs", str(folder), "--out", str(tmp_path / "idx")]) == 0
    err = capsys.readouterr().err
    assert f"{folder / name}: skipped, cannot read this {Path(name).suffix} file" in err
    assert "skipped 1 of 2 files" in err
    assert "Traceback" not in err
    assert len(Index.load(tmp_path / "idx")) == 2


def test_a_binary_text_file_is_still_refused(tmp_path, capsys):
    folder = tmp_path / "office"
    folder.mkdir()
    (folder / "notes.txt").write_bytes(b"\x00\xff\xfe binary" * 10)
    assert main(["index", "build", "--docs", str(folder), "--out", str(tmp_path / "idx")]) == 2
    assert not (tmp_path / "idx").exists()
