"""The filter box's text becomes Searcher filters: a law, a folder, or KEY=VALUE."""

from lexedge.runtime.datasets import Document
from lexedge.tui.filters import describe, parse_filter, title_prefix_style


def test_law_name_uses_the_law_field_when_the_corpus_has_one():
    assert parse_filter("民法", has_law_field=True) == {"law": "民法"}


def test_law_name_becomes_a_title_prefix_matching_the_corpus_style():
    ja = [Document("1", "…", "民法 第九十条"), Document("2", "…", "刑法 第百九十九条")]
    zh = [Document("1", "…", "劳动合同法第四十六条")]
    assert title_prefix_style(ja) == "{law} *"
    assert title_prefix_style(zh) == "{law}第*"
    assert parse_filter("民法", False, title_prefix_style(ja)) == {"title": "民法 *"}
    assert parse_filter("劳动合同法", False, title_prefix_style(zh)) == {"title": "劳动合同法第*"}


def test_folder_and_key_value_filters_combine():
    assert parse_filter("contracts/, lang=ja", has_law_field=True) == {
        "source": "contracts/*", "lang": "ja"}
    assert parse_filter("source=a/b.txt", has_law_field=False) == {"source": "a/b.txt"}


def test_blank_text_means_no_filter():
    assert parse_filter("  ", has_law_field=True) == {}
    assert describe({}) == "none"
