"""Folders of documents: statutes split into articles, other files into passages (issue 6)."""

import json

from lexedge.cli import main
from lexedge.runtime import ingest
from lexedge.runtime.index import Index
from lexedge.runtime.ingest import iter_documents, split_articles, split_passages

CIVIL_CODE = """民法
第一条　私権は、公共の福祉に適合しなければならない。
２　権利の行使及び義務の履行は、信義に従い誠実に行わなければならない。
第九十条　公の秩序又は善良の風俗に反する法律行為は、無効とする。
第九十条の二　テスト用の条文である。
"""
LABOR_LAW_ZH = """中华人民共和国劳动合同法
第一条 为了完善劳动合同制度，制定本法。
第四十七条 经济补偿按劳动者在本单位工作的年限，每满一年支付一个月工资的标准向劳动者支付。
"""


def test_statutes_split_into_articles_with_headings_as_titles(tmp_path):
    (tmp_path / "laws").mkdir()
    (tmp_path / "laws" / "minpo.txt").write_text(CIVIL_CODE, encoding="utf-8")
    (tmp_path / "laws" / "labor.md").write_text(LABOR_LAW_ZH, encoding="utf-8")
    documents = {d.id: d for d in iter_documents(tmp_path)}
    article = documents["laws/minpo.txt#第九十条"]
    assert article.title == "民法 第九十条"
    assert article.text == "公の秩序又は善良の風俗に反する法律行為は、無効とする。"
    assert article.metadata == {"source": "laws/minpo.txt", "folder": "laws", "law": "民法",
                                "position": 1}
    assert "laws/minpo.txt#第九十条の二" in documents
    assert "信義に従い" in documents["laws/minpo.txt#第一条"].text  # paragraphs stay together
    assert documents["laws/labor.md#第四十七条"].title == "中华人民共和国劳动合同法 第四十七条"


def test_long_documents_become_overlapping_passages(tmp_path):
    sentences = "".join(f"これは契約書の第{i}文である。" for i in range(200))
    (tmp_path / "contract.html").write_text(
        f"<html><head><style>p {{}}</style></head><body><p>{sentences}</p></body></html>",
        encoding="utf-8")
    documents = list(iter_documents(tmp_path))
    assert len(documents) > 3
    assert all(len(d.text) <= 600 for d in documents)
    assert "style" not in documents[0].text and "{" not in documents[0].text
    assert [d.metadata["position"] for d in documents] == list(range(len(documents)))
    # consecutive passages overlap, so a sentence cut at a boundary is still whole somewhere
    assert documents[0].text[-40:] in documents[1].text


def test_split_helpers_edge_cases():
    assert split_articles("no headings here") == []
    assert split_passages("") == []
    assert split_passages("short") == ["short"]


def test_cli_update_and_remove_follow_the_files(tmp_path, capsys):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "minpo.txt").write_text(CIVIL_CODE, encoding="utf-8")
    (folder / "note.txt").write_text("事務所のメモ：解雇予告の確認。", encoding="utf-8")
    index_path = tmp_path / "idx"
    assert main(["index", "build", "--docs", str(folder), "--out", str(index_path)]) == 0
    assert len(Index.load(index_path)) == 4
    (folder / "minpo.txt").write_text(CIVIL_CODE.replace("第九十条の二　テスト用の条文である。\n", ""),
                                      encoding="utf-8")
    assert main(["index", "update", "--index", str(index_path), "--docs", str(folder)]) == 0
    assert "0 added or replaced, 1 removed" in capsys.readouterr().out
    assert main(["index", "remove", "--index", str(index_path), "--source", "note.txt"]) == 0
    index = Index.load(index_path)
    assert len(index) == 2
    assert main(["search", "公の秩序", "--index", str(index_path), "--json"]) == 0
    hits = json.loads(capsys.readouterr().out.split("\n", 1)[1])["hits"]
    assert hits[0]["title"] == "民法 第九十条"


# Issue 20, findings 8 and 9 (folder side): a file that is not text, or too big, is refused
# by name with one line and exit 2, instead of becoming hundreds of junk passages.

def folder_build_error(tmp_path, capsys, folder) -> str:
    code = main(["index", "build", "--docs", str(folder), "--out", str(tmp_path / "idx")])
    error = capsys.readouterr().err
    assert code == 2, error
    assert error.startswith("lexedge: error: ") and error.count("\n") == 1, error
    return error.strip()


def test_a_binary_file_named_txt_is_refused_by_name(tmp_path, capsys):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "minpo.txt").write_text(CIVIL_CODE, encoding="utf-8")
    (folder / "scan.txt").write_bytes(b"\x00" * 4096)
    error = folder_build_error(tmp_path, capsys, folder)
    assert f"{folder / 'scan.txt'} line 1: binary data, not text: 4,096 NUL or control " \
           "characters" in error
    # a stray control character or two is still text
    (folder / "scan.txt").write_bytes("メモ\x00：解雇予告\x1bの確認。".encode())
    assert main(["index", "build", "--docs", str(folder), "--out", str(tmp_path / "idx")]) == 0


def test_a_file_over_the_size_limit_is_refused_by_name(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ingest, "MAX_FILE_BYTES", 1000)
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "minpo.txt").write_text(CIVIL_CODE, encoding="utf-8")
    (folder / "huge.md").write_text("契約書の条項。" * 200, encoding="utf-8")
    assert folder_build_error(tmp_path, capsys, folder).endswith(
        f"{folder / 'huge.md'}: 4,200 bytes, over the 1,000-byte limit for one file: split it")


def test_an_article_over_the_document_limit_is_refused_with_its_line(tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.setattr(ingest, "MAX_DOCUMENT_CHARS", 60)
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "minpo.txt").write_text(CIVIL_CODE.replace("テスト用の条文である。", "長" * 61),
                                      encoding="utf-8")
    assert folder_build_error(tmp_path, capsys, folder).endswith(
        f"{folder / 'minpo.txt'} line 5: 第九十条の二 is 61 characters, over the 60-character "
        "limit for one document")


def test_remove_accepts_the_path_the_user_indexed(tmp_path, capsys, monkeypatch):
    """Issue 23: `--source /full/path/file.txt` (or a path from here) removes that file's
    documents, as `--source note.txt` (its path inside the folder) does; a file that was never
    indexed gets a line naming both forms."""
    folder = tmp_path / "docs"
    (folder / "memos").mkdir(parents=True)
    (folder / "minpo.txt").write_text(CIVIL_CODE, encoding="utf-8")
    (folder / "memos" / "note.txt").write_text("事務所のメモ：解雇予告の確認。", encoding="utf-8")
    (folder / "memos" / "old.txt").write_text("古いメモ：契約の更新。", encoding="utf-8")
    index_path = tmp_path / "idx"
    assert main(["index", "build", "--docs", str(folder), "--out", str(index_path)]) == 0
    assert main(["index", "remove", "--index", str(index_path), "--source",
                 str(folder / "memos" / "note.txt")]) == 0
    monkeypatch.chdir(folder / "memos")
    assert main(["index", "remove", "--index", str(index_path), "--source", "old.txt"]) == 0
    assert len(Index.load(index_path)) == 3
    assert main(["index", "remove", "--index", str(index_path), "--source", "nope.txt"]) == 2
    assert f"or by its path inside {folder}" in capsys.readouterr().err


def test_a_markdown_files_passages_are_titled_by_its_first_heading(tmp_path):
    (tmp_path / "nda.md").write_text("# 秘密保持契約\n\n第1条 甲及び乙は、相手方の秘密を守る。\n",
                                     encoding="utf-8")
    (tmp_path / "memo.md").write_text("本文だけのメモ。\n", encoding="utf-8")
    (tmp_path / "tags.md").write_text("#契約 #メモ\n本文。\n", encoding="utf-8")
    (tmp_path / "closed.md").write_text("\n## 業務委託契約 ##\n本文。\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("# not a heading in a text file\n本文。\n",
                                        encoding="utf-8")
    titles = {d.id: d.title for d in iter_documents(tmp_path)}
    assert titles == {"nda.md#p0": "秘密保持契約 (1)", "memo.md#p0": "memo (1)",
                      "notes.txt#p0": "notes (1)", "tags.md#p0": "tags (1)",
                      "closed.md#p0": "業務委託契約 (1)"}
