"""What a person types, and what a document holds, is checked or made harmless (issue 20,
findings 8-10): out-of-range options and unusable queries are refused by name in one line, the
matched-terms work per hit is bounded, document text never drives the terminal, and a reader
that stops reading (``| head -1``) ends the command quietly."""

import json
import math
import subprocess
import sys
import time

import pytest

from lexedge.cli import main
from lexedge.runtime import snippets
from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.index import Index
from lexedge.runtime.searcher import MAX_QUERY_CHARS, Searcher

# What a terminal may act on: C0 but tab and newline, DEL, C1, bidi overrides and isolates.
TERMINAL_CONTROLS = {chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0),
                                      *range(0x202A, 0x202F), *range(0x2066, 0x206A))} - {"\t",
                                                                                      "\n"}
HOSTILE_TITLE = "\x1b]0;pwned\x07民法 [bold]第九十条[/bold] \x9b31m\u202eevil"
HOSTILE_TEXT = "公の秩序又は善良の風俗に反する法律行為は、無効とする。\x1b[2J\x7f\u2066end"


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                    encoding="utf-8")
    return path


@pytest.fixture
def tiny_index(tiny_dataset, tmp_path):
    Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx", progress=False)
    return tmp_path / "idx"


@pytest.fixture
def hostile_index(tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [
        {"id": "d1\x1b[31m", "title": HOSTILE_TITLE, "text": HOSTILE_TEXT},
        {"id": "d2", "title": "刑法 第百九十九条", "text": "人を殺した者は、死刑に処する。"}])
    Index.build(corpus, tmp_path / "hostile", progress=False)
    return tmp_path / "hostile"


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


# -- options: refused by name, before any work ----------------------------------------------

@pytest.mark.parametrize("option,value,wanted", [
    ("--top", "-1", "a positive integer"), ("--budget", "-5", "a positive integer"),
    ("--budget", "0", "a positive integer"), ("--rerank", "-3", "an integer >= 0"),
    ("--alpha", "1.5", "a number within [0, 1]"), ("--alpha", "nan", "a number within [0, 1]"),
    ("--rerank-weight", "-0.1", "a number within [0, 1]")])
def test_search_options_out_of_range_are_refused_naming_the_option(tiny_index, capsys, option,
                                                                   value, wanted):
    with pytest.raises(SystemExit) as exited:
        main(["search", "労働時間", "--index", str(tiny_index), option, value])
    assert exited.value.code == 2
    assert f"argument {option}: {value}: must be {wanted}" in one_line_error(capsys)


@pytest.mark.parametrize("command", [["index", "build", "--docs", "DOCS", "--out", "OUT"],
                                     ["eval", "DOCS"]])
@pytest.mark.parametrize("option,value,wanted", [
    ("--k1", "-1", "a number >= 0"), ("--k1", "inf", "a number >= 0"),
    ("--b", "1.5", "a number within [0, 1]"), ("--b", "-0.25", "a number within [0, 1]")])
def test_bm25_parameters_out_of_range_are_refused_naming_the_option(tiny_dataset, tmp_path,
                                                                    capsys, command, option,
                                                                    value, wanted):
    argv = [str(tiny_dataset) if a == "DOCS" else str(tmp_path / "idx") if a == "OUT" else a
            for a in command]
    with pytest.raises(SystemExit) as exited:
        main([*argv, option, value])
    assert exited.value.code == 2
    assert f"argument {option}: {value}: must be {wanted}" in one_line_error(capsys)
    assert not (tmp_path / "idx").exists()


@pytest.mark.parametrize("arguments,message", [
    ({"budget": -5}, "budget -5: must be a positive integer"),
    ({"budget": 2.5}, "budget 2.5: must be a positive integer"),
    ({"top": -1}, "top -1: must be a positive integer"),
    ({"rerank": -3}, "rerank -3: must be a non-negative integer"),
    ({"alpha": 1.5}, "alpha 1.5: must be within [0, 1]"),
    ({"alpha": math.nan}, "alpha nan: must be within [0, 1]"),
    ({"rerank_weight": 2.0}, "rerank weight 2: must be within [0, 1]")])
def test_the_python_api_refuses_out_of_range_arguments_by_name(tiny_index, arguments, message):
    with pytest.raises(LexedgeError) as caught:
        Searcher(tiny_index).search("労働時間", **arguments)
    assert str(caught.value) == message


# -- queries ------------------------------------------------------------------------------------

def test_an_undecodable_query_is_one_line_and_exit_2(tiny_index, capsys):
    # '\udcff' is how Python passes on the byte 0xff of an argument that is not UTF-8.
    assert main(["search", "労働\udcff", "--index", str(tiny_index)]) == 2
    assert one_line_error(capsys) == ("lexedge: error: query: not valid text (undecodable byte "
                                      "0xff at character 3); give it as UTF-8")


def test_an_undecodable_command_line_byte_is_refused_without_a_traceback(tiny_index):
    result = subprocess.run([sys.executable, "-m", "lexedge", "search", b"\xff",
                             "--index", str(tiny_index)], capture_output=True)
    assert result.returncode == 2
    assert result.stderr.decode().strip() == ("lexedge: error: query: not valid text "
                                              "(undecodable byte 0xff at character 1); give it "
                                              "as UTF-8")


def test_a_query_over_the_limit_is_refused_naming_it(tiny_index, capsys):
    # accepted: it finds nothing (exit 1, as grep), it is not refused (exit 2)
    assert main(["search", "労" * MAX_QUERY_CHARS, "--index", str(tiny_index)]) == 1
    capsys.readouterr()
    started = time.perf_counter()
    assert main(["search", "労" * (MAX_QUERY_CHARS + 1), "--index", str(tiny_index)]) == 2
    assert time.perf_counter() - started < 5  # refused before any analysis
    assert one_line_error(capsys) == (f"lexedge: error: query: {MAX_QUERY_CHARS + 1:,} "
                                      f"characters, over the limit of {MAX_QUERY_CHARS:,} "
                                      "(MAX_QUERY_CHARS); shorten it")


def test_the_query_limit_is_well_above_every_real_query(shared_data):
    longest = max(len(json.loads(line)["text"])
                  for path in shared_data.glob("*/queries.jsonl")
                  for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    assert MAX_QUERY_CHARS >= 4 * longest


def test_an_empty_or_blank_query_returns_no_hits(tiny_index):
    for query in ("", "   \n"):
        assert Searcher(tiny_index).search(query).hits == []


# -- matched terms: bounded work per hit ------------------------------------------------------

def test_the_snippet_of_a_huge_text_normalises_only_around_its_first_term():
    filler = "lorem ipsum dolor sit amet " * 40_000  # 1.08 M characters
    text = filler + "the Tenant may terminate the lease " + filler
    shown = snippets.snippet(text, ["terminate", "tenant"])  # "Tenant" as well
    assert "the tenant may terminate" in shown and shown.startswith("…") and shown.endswith("…")


def test_matched_terms_come_longest_first_and_a_usual_snippet_is_unchanged():
    assert snippets.longest_first({"order", "a", "public", "is", "void"}) == \
        ["public", "order", "void", "is", "a"]
    assert snippets.snippet("Article  90.\nA juristic act", ["juristic"]) == \
        "article 90. a juristic act"


def test_a_search_returning_a_huge_document_stays_fast(tmp_path):
    huge = "lorem ipsum dolor sit amet " * 30_000 + "the tenant may terminate the lease"
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [
        {"id": "huge", "title": "Lease", "text": huge},
        {"id": "small", "title": "Sale", "text": "the buyer may cancel the sale"}])
    index = Index.build(corpus, tmp_path / "idx", analyzer="word", progress=False)
    searcher = Searcher(index)
    analysed = []  # a hit's terms come from the index: no document text is analysed again
    tokens = searcher.index.analyzer.tokens
    searcher.index.analyzer.tokens = lambda text: analysed.append(len(text)) or tokens(text)
    started = time.perf_counter()
    hit = searcher.search("can the tenant terminate").hits[0]
    assert time.perf_counter() - started < 2.0
    assert analysed == [len("can the tenant terminate")]
    assert hit.id == "huge" and {"tenant", "terminate"} <= set(hit.matched_terms)
    assert "tenant may terminate" in hit.snippet


# -- document text never drives the terminal ----------------------------------------------------

def test_plain_output_shows_control_characters_instead_of_sending_them(hostile_index, capsys):
    assert main(["search", "公の秩序", "--index", str(hostile_index)]) == 0
    out = capsys.readouterr().out
    assert not TERMINAL_CONTROLS & set(out)
    assert "␛]0;pwned␇民法 [bold]第九十条[/bold]" in out  # visible, and markup stays text
    assert "[d1␛[31m]" in out and "無効とする。␛[2j␡" in out  # the snippet is case-folded


def test_json_output_keeps_the_exact_text_and_escapes_the_controls(hostile_index, capsys):
    assert main(["search", "公の秩序", "--index", str(hostile_index), "--json"]) == 0
    out = capsys.readouterr().out
    assert not TERMINAL_CONTROLS & set(out)
    assert "\\u001b]0;pwned\\u0007" in out and "\\u009b31m\\u202eevil" in out
    hit = json.loads(out)["hits"][0]
    assert (hit["id"], hit["title"], hit["text"]) == ("d1\x1b[31m", HOSTILE_TITLE, HOSTILE_TEXT)


def test_displayable_keeps_newlines_tabs_and_every_printable_character():
    text = "第一条\tこの法律は、\n個人情報の…保護を図る。 ＡＩ ß ﬁ 😀 \u200b"
    assert snippets.displayable(text) == text
    assert snippets.displayable("\x00\x1b\x7f\x85\x9f\u202a\u202e\u2066\u2069\ud800") == \
        "␀␛␡\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd"


# -- a reader that goes away --------------------------------------------------------------------

def test_a_closed_pipe_ends_the_command_quietly(tiny_index):
    process = subprocess.Popen([sys.executable, "-m", "lexedge", "search", "労働時間",
                                "--index", str(tiny_index), "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # as `| head -1` does once it has its line: here, before any
    _, err = process.communicate(timeout=120)
    assert err.decode() == ""
    assert process.returncode == 141  # 128 + SIGPIPE, as a shell reports `yes | head -1`
