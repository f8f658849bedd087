"""Bad input gets one line naming the file and line (issue 2, point 2)."""

import gzip
import json

import pytest

from lexedge.cli import main
from lexedge.runtime.datasets import MAX_DOCUMENT_CHARS, iter_corpus, load_qrels, load_queries
from lexedge.runtime.errors import DataError


def corpus_error(tmp_path, content: bytes) -> str:
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        list(iter_corpus(path))
    return str(info.value)


def test_malformed_json_names_file_and_line(tmp_path):
    message = corpus_error(tmp_path, b'{"id": "a", "text": "x"}\n{"id": "b", "text": \n')
    assert message.startswith(f"{tmp_path / 'corpus.jsonl'} line 2: malformed JSON")


def test_missing_text_names_the_field(tmp_path):
    message = corpus_error(tmp_path, b'{"id": "a", "text": "x"}\n\n{"id": "b", "title": "t"}\n')
    assert message.endswith('corpus.jsonl line 3: missing "text"')


def test_missing_id_names_the_field(tmp_path):
    message = corpus_error(tmp_path, b'{"text": "x"}\n')
    assert message.endswith('corpus.jsonl line 1: missing "id"')


def test_duplicate_id(tmp_path):
    message = corpus_error(tmp_path, b'{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n')
    assert message.endswith('corpus.jsonl line 2: duplicate id "a"')


def test_empty_file(tmp_path):
    assert corpus_error(tmp_path, b"").endswith("corpus.jsonl: empty file: no records")
    assert corpus_error(tmp_path, b"\n  \n").endswith("corpus.jsonl: empty file: no records")


def test_non_utf8_bytes(tmp_path):
    message = corpus_error(tmp_path, b'{"id": "a", "text": "x"}\n{"id": "b", "text": "\xff"}\n')
    assert "corpus.jsonl line 2: not valid UTF-8 (byte 0xff at column 22)" in message


def test_non_object_line(tmp_path):
    message = corpus_error(tmp_path, b'["a", "b"]\n')
    assert message.endswith("corpus.jsonl line 1: expected a JSON object, got list")


def test_text_of_wrong_type(tmp_path):
    message = corpus_error(tmp_path, b'{"id": "a", "text": 3}\n')
    assert message.endswith('corpus.jsonl line 1: "text" must be a string, got int')


def test_missing_corpus_file(tmp_path):
    with pytest.raises(DataError, match="corpus.jsonl: file not found"):
        list(iter_corpus(tmp_path / "corpus.jsonl"))


def test_queries_duplicate_id(tmp_path):
    path = tmp_path / "queries.jsonl"
    path.write_text('{"id": 1, "text": "a"}\n{"id": "1", "text": "b"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r'queries.jsonl line 2: duplicate id "1"'):
        load_queries(path)


def write_qrels(tmp_path, content: str):
    path = tmp_path / "dev.tsv"
    path.write_text(content, encoding="utf-8")
    return path


def test_qrels_unknown_corpus_id(tmp_path):
    path = write_qrels(tmp_path, "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td9\t1\n")
    with pytest.raises(DataError) as info:
        load_qrels(path, query_ids={"q1"}, doc_ids={"d1"})
    assert str(info.value).endswith('dev.tsv line 3: unknown corpus id "d9" (not in corpus.jsonl)')


def test_qrels_unknown_query_id(tmp_path):
    path = write_qrels(tmp_path, "q7\td1\t1\n")
    with pytest.raises(DataError, match=r'dev.tsv line 1: unknown query id "q7"'):
        load_qrels(path, query_ids={"q1"}, doc_ids={"d1"})


def test_qrels_bad_columns_and_score(tmp_path):
    with pytest.raises(DataError, match=r"dev.tsv line 1: expected 3 tab-separated columns"):
        load_qrels(write_qrels(tmp_path, "q1 d1 1\n"))
    with pytest.raises(DataError, match=r"dev.tsv line 2: score must be an integer, got 'high'"):
        load_qrels(write_qrels(tmp_path, "q1\td1\t1\nq1\td2\thigh\n"))


def test_qrels_empty_and_non_utf8(tmp_path):
    with pytest.raises(DataError, match=r"dev.tsv: empty file: no judgments"):
        load_qrels(write_qrels(tmp_path, "query-id\tcorpus-id\tscore\n"))
    path = tmp_path / "bad.tsv"
    path.write_bytes(b"q1\td\xe9\t1\n")
    with pytest.raises(DataError, match=r"bad.tsv line 1: not valid UTF-8"):
        load_qrels(path)


def test_valid_corpus_keeps_title_and_metadata(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"id": 7, "title": "T", "text": "x", "law": "民法"}\n', encoding="utf-8")
    (document,) = iter_corpus(path)
    assert (document.id, document.title, document.text) == ("7", "T", "x")
    assert document.metadata == {"law": "民法"}
    assert document.indexed_text == "T\nx"


# Issue 20, findings 8 and 9: what used to end in a traceback ends in one line and exit 2.

def build_error(tmp_path, capsys, corpus) -> str:
    """Run ``lexedge index build`` over ``corpus``; return its one-line error."""
    code = main(["index", "build", "--docs", str(corpus), "--out", str(tmp_path / "idx")])
    error = capsys.readouterr().err
    assert code == 2, error
    assert error.startswith("lexedge: error: ") and error.count("\n") == 1, error
    assert not (tmp_path / "idx").exists()
    return error.strip()


def test_lone_surrogate_escape_is_refused_with_its_line(tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"id": "a", "text": "\\ud83d\\ude00 is a pair"}\n'
                      '{"id": "b", "text": "cut here \\ud800"}\n', encoding="utf-8")
    assert build_error(tmp_path, capsys, corpus).endswith(
        'corpus.jsonl line 2: "text" holds a lone surrogate \\ud800 (half of a UTF-16 pair), '
        "which is not a character")


def test_a_corpus_where_no_document_has_text_is_refused(tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"id": "a", "text": ""}\n{"id": "b", "text": " "}\n', encoding="utf-8")
    assert build_error(tmp_path, capsys, corpus).endswith(
        "corpus.jsonl: no document has any text")
    # texts with no word in them get past the reader; the BM25 build says the same
    corpus.write_text('{"id": "a", "text": "。、"}\n', encoding="utf-8")
    assert "no document has any text" in build_error(tmp_path, capsys, corpus)


def test_truncated_gzip_corpus_names_the_line_it_breaks_in(tmp_path, capsys):
    lines = "".join(json.dumps({"id": f"d{i}", "text": f"text number {i}"}) + "\n"
                    for i in range(5000)).encode()
    packed = gzip.compress(lines)
    corpus = tmp_path / "corpus.jsonl.gz"
    corpus.write_bytes(packed[:len(packed) // 2])
    error = build_error(tmp_path, capsys, corpus)
    assert "corpus.jsonl.gz line " in error
    assert error.endswith("the gzip data ends early: the file is truncated")
    corpus.write_bytes(b"not gzip at all\n")
    assert "corpus.jsonl.gz line 1: not a valid gzip file" in build_error(tmp_path, capsys, corpus)


def test_a_document_over_the_size_limit_is_refused_with_its_line(tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"id": "a", "text": "短い条文。"}) + "\n" +
                      json.dumps({"id": "b", "text": "長" * (MAX_DOCUMENT_CHARS + 1)}) + "\n",
                      encoding="utf-8")
    assert build_error(tmp_path, capsys, corpus).endswith(
        f"corpus.jsonl line 2: document of {MAX_DOCUMENT_CHARS + 1:,} characters, over the "
        f"{MAX_DOCUMENT_CHARS:,}-character limit for one document: split it into passages")
