"""``--json`` on eval and every index command (issue 23): one JSON object on stdout, for
scripts, with what the text line says."""

import json

from lexedge.cli import main


def test_index_commands_and_eval_print_json(tiny_dataset, tmp_path, capsys):
    index = str(tmp_path / "idx")
    assert main(["index", "build", "--docs", str(tiny_dataset), "--out", index, "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["documents"] == 6 and built["index"] == index and built["vectors"] is None
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"id": "d9", "text": "賃借人は賃料を支払う。"},
                                ensure_ascii=False) + "\n", encoding="utf-8")
    assert main(["index", "add", "--index", index, "--docs", str(extra), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "index": index, "added_or_replaced": 1, "removed": 0, "unchanged": 0, "documents": 7}
    assert main(["index", "remove", "--index", index, "--ids", "d9", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"index": index, "removed": 1,
                                                   "documents": 6}
    assert main(["eval", str(tiny_dataset), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["queries"] == 2 and 0 <= metrics["recall@10"] <= 1


def test_search_jsonl_prints_a_hit_per_line(tiny_dataset, tmp_path, capsys):
    index = str(tmp_path / "idx")
    assert main(["index", "build", "--docs", str(tiny_dataset), "--out", index]) == 0
    capsys.readouterr()
    assert main(["search", "損害を賠償する責任", "--index", index, "--jsonl", "--top", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    hits = [json.loads(line) for line in lines]
    assert [h["rank"] for h in hits] == list(range(1, len(hits) + 1)) and hits[0]["id"] == "d2"
    assert main(["search", "zzzz", "--index", index, "--jsonl"]) == 1
    assert capsys.readouterr().out == ""
