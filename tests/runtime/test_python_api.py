"""The Python API (issue 23): ``from lexedge import Index, Searcher``; ``Index.build`` and
``add`` take Documents or corpus records; ``search_many`` answers a batch."""

import subprocess
import sys

import pytest

import lexedge
from lexedge import Document, Index, LexedgeError, Searcher

RECORDS = [
    {"id": "a90", "title": "民法 第九十条", "text": "公の秩序又は善良の風俗に反する法律行為は、無効とする。",
     "law": "民法"},
    {"id": "a709", "title": "民法 第七百九条",
     "text": "故意又は過失によって他人の権利又は法律上保護される利益を侵害した者は、これによって生じた損害を賠償する責任を負う。",
     "law": "民法"},
]


def test_build_from_records_add_documents_and_search_many(tmp_path):
    index = Index.build(RECORDS, tmp_path / "idx", progress=False)
    assert len(index) == 2 and index.manifest["source"]["python"] == 2
    index = index.add([Document("k199", "人を殺した者は、死刑又は無期若しくは五年以上の懲役に処する。",
                                "刑法 第百九十九条", {"law": "刑法"}),
                       {"id": "a1", "text": "私権は、公共の福祉に適合しなければならない。", "law": "民法"}])
    assert len(index) == 4
    results = Searcher(index.path).search_many(["損害を賠償する責任", "人を殺した者"], top=1)
    assert [r.hits[0].id for r in results] == ["a709", "k199"]
    assert Searcher(index.path).search("公の秩序", filters={"law": "民法"}).hits[0].id == "a90"


def test_a_bad_record_is_named_by_its_position(tmp_path):
    with pytest.raises(LexedgeError, match=r'documents\[1\]: missing "text"'):
        Index.build([RECORDS[0], {"id": "x"}], tmp_path / "idx", progress=False)
    with pytest.raises(LexedgeError, match=r"documents: none given"):
        Index.build([], tmp_path / "idx", progress=False)
    assert not (tmp_path / "idx").exists()


def test_importing_lexedge_loads_no_part_until_a_name_is_used():
    code = ("import sys, lexedge; print(sorted(m for m in sys.modules if m.startswith("
            "'lexedge.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
    assert lexedge.Searcher is Searcher
    with pytest.raises(AttributeError):
        lexedge.Nope  # noqa: B018
