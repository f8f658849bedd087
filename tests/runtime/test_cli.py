"""The command line: eval writes the metrics JSON and a TREC run; errors are one line."""

import json
import subprocess
import sys

import pytest

from lexedge.cli import main

REQUIRED_KEYS = {"recall@1", "recall@3", "recall@5", "recall@10", "recall@20", "recall@50",
                 "recall@100", "recall@200", "mrr@10", "ndcg@10", "queries",
                 "queries_per_second"}


def test_eval_writes_metrics_and_run(tiny_dataset, tmp_path, capsys):
    metrics_path, run_path = tmp_path / "m.json", tmp_path / "run.trec"
    code = main(["eval", str(tiny_dataset), "--split", "dev", "--method", "bm25",
                 "--metrics-out", str(metrics_path), "--run-out", str(run_path)])
    assert code == 0
    metrics = json.loads(metrics_path.read_text())
    assert REQUIRED_KEYS <= metrics.keys()
    assert metrics["queries"] == 2 and metrics["recall@1"] == 1.0
    first = run_path.read_text().splitlines()[0].split()
    assert first[1] == "Q0" and first[3] == "1"
    assert "recall@100" in capsys.readouterr().out


def test_bad_input_is_one_line_and_nonzero(tmp_path, capsys):
    (tmp_path / "corpus.jsonl").write_text('{"id": "a"}\n', encoding="utf-8")
    (tmp_path / "queries.jsonl").write_text('{"id": "q", "text": "x"}\n', encoding="utf-8")
    (tmp_path / "qrels.tsv").write_text("q\ta\t1\n", encoding="utf-8")
    assert main(["eval", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.endswith('corpus.jsonl line 1: missing "text"')


def test_unknown_split_lists_available(tiny_dataset, capsys):
    assert main(["eval", str(tiny_dataset), "--split", "test"]) == 2
    assert "no qrels for split 'test' (available: dev, train)" in capsys.readouterr().err


def test_index_build_and_search_json(tiny_dataset, tmp_path, capsys):
    assert main(["index", "build", "--docs", str(tiny_dataset), "--out",
                 str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    assert main(["search", "労働時間", "--index", str(tmp_path / "idx"), "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert hits[0]["id"] == "d5" and hits[0]["scores"]["bm25"] > 0


def test_missing_index_is_refused_clearly(tmp_path, capsys):
    assert main(["search", "x", "--index", str(tmp_path / "nope")]) == 2
    assert "not a lexedge index" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["-m", "lexedge", "--version"]])
def test_python_dash_m(argv, tmp_path):
    result = subprocess.run([sys.executable, *argv], capture_output=True, text=True, check=True,
                            cwd=tmp_path)
    assert result.stdout.startswith("lexedge ")
