"""An article's law (field, source or title) and its neighbours in the document store."""

from lexedge.runtime.index import Index
from lexedge.tui.context import law_of, neighbours, split_title


def test_law_comes_from_metadata_then_title():
    assert law_of("民法 第九十条") == "民法"
    assert law_of("劳动合同法第四十六条") == "劳动合同法"
    assert law_of("民法 第九十条", {"law": "民法典"}) == "民法典"
    assert law_of("Clause 4", {"source": "leases/a.txt"}) == "leases/a.txt"
    assert law_of("Preamble") == ""


def test_split_title_keeps_the_article_part():
    assert split_title("民事訴訟法 第百三十二条の三") == ("民事訴訟法", "第百三十二条の三")
    assert split_title("Preamble") == ("", "Preamble")


def test_neighbours_are_adjacent_rows_of_the_same_law(tiny_index):
    index = Index.load(tiny_index)
    before, after = neighbours(index, "d2")  # 民法 第七百九条, after 民法 第九十条
    assert before.title == "民法 第九十条"
    assert after is None  # the next row is 刑法
    assert neighbours(index, "no-such-id") == (None, None)
