"""Recent queries: what was meant, not each keystroke; browsed like a shell's history."""

from lexedge.tui.history import QueryHistory


def test_search_as_you_type_prefixes_collapse_into_one_entry():
    history = QueryHistory()
    for typed in ["解", "解雇", "解雇の予告", "解雇の"]:
        history.add(typed)
    assert history.entries == ["解雇の予告"]


def test_up_walks_back_and_down_returns_to_the_draft():
    history = QueryHistory()
    for query in ["民法", "刑法", "著作権"]:
        history.add(query)
    assert history.previous("下書き") == "著作権"
    assert history.previous("著作権") == "刑法"
    history.add("刑法")  # the recalled query's own search keeps the place
    assert history.previous("刑法") == "民法"
    assert history.previous("民法") == "民法"  # the oldest stays
    assert history.next("民法") == "刑法"
    assert history.next("刑法") == "著作権"
    assert history.next("著作権") == "下書き"


def test_a_repeated_query_moves_to_the_end_and_the_limit_holds():
    history = QueryHistory(limit=3)
    for query in ["民法", "刑法", "民法", "商法", "会社法"]:
        history.add(query)
    assert history.entries == ["民法", "商法", "会社法"]
