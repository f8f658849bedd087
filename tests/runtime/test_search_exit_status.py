"""``lexedge search`` exits as grep and ripgrep do (issue 23): 0 when it found something, 1
when it found nothing, 2 on an error, so scripts can branch on it."""

from lexedge.cli import main
from lexedge.runtime.index import Index


def test_found_nothing_and_found_something_and_an_error(tiny_dataset, tmp_path, capsys):
    index = str(Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx",
                            progress=False).path)
    assert main(["search", "損害賠償", "--index", index]) == 0
    assert main(["search", "zzzz", "--index", index]) == 1
    assert "no results" in capsys.readouterr().out
    assert main(["search", "zzzz", "--index", index, "--json"]) == 1
    assert main(["search", "zzzz", "--index", str(tmp_path / "missing")]) == 2
