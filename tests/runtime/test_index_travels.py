"""Indexes that travel (issue 23): an index finds the bundle that moved with it, and one whose
bundle is gone says to give it with --bundle."""

import shutil

import pytest

from lexedge.cli import main
from lexedge.runtime.bundle import Bundle
from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.index import Index
from lexedge.runtime.searcher import Searcher

QUERY = "本人の同意なしに個人データを第三者へ提供できますか"


def test_an_index_moved_with_its_bundle_still_searches(tiny_dataset, tiny_bundle, tmp_path):
    demo = tmp_path / "demo"
    shutil.copytree(tiny_bundle, demo / "bundle")
    Index.build(tiny_dataset / "corpus.jsonl", demo / "index",
                bundle=Bundle.load(demo / "bundle"), progress=False)
    expected = [h.id for h in Searcher(demo / "index").search(QUERY).hits]
    moved = demo.rename(tmp_path / "demo-moved")
    assert [h.id for h in Searcher(moved / "index").search(QUERY).hits] == expected
    assert main(["search", QUERY, "--index", str(moved / "index")]) == 0


def test_an_index_whose_bundle_is_gone_names_the_option(tiny_dataset, tiny_bundle, tmp_path,
                                                        capsys):
    shutil.copytree(tiny_bundle, tmp_path / "b")
    Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx",
                bundle=Bundle.load(tmp_path / "b"), progress=False)
    (tmp_path / "b").rename(tmp_path / "elsewhere")
    with pytest.raises(LexedgeError, match=r"idx: its bundle is no longer at .*b \(moved or "
                                           r"deleted\); give its folder with --bundle DIR"):
        Searcher(tmp_path / "idx")
    assert main(["search", QUERY, "--index", str(tmp_path / "idx"), "--bundle",
                 str(tmp_path / "elsewhere")]) == 0
    assert main(["search", QUERY, "--index", str(tmp_path / "idx")]) == 2
    assert "give its folder with --bundle DIR" in capsys.readouterr().err
