"""Terms are marked in the original text although the analyzer reports them normalised."""

from lexedge.tui.highlight import display_terms, term_spans


def test_longest_term_wins_and_overlaps_merge():
    assert term_spans("個人情報の保護", ["個人情報", "情報"]) == [(0, 4)]


def test_every_occurrence_is_marked():
    text = "予告をしない使用者は予告"
    assert term_spans(text, ["予告"]) == [(0, 2), (10, 12)]


def test_full_width_and_case_are_matched_through_normalisation():
    text = "ＡＩ事業者の義務"  # the analyzer sees "ai事業者の義務"
    assert term_spans(text, ["ai"]) == [(0, 2)]


def test_chinese_terms_are_marked():
    text = "劳动合同解除或者终止后，支付经济补偿"
    spans = term_spans(text, ["经济补偿", "劳动合同", "解除"])
    assert [text[s:e] for s, e in spans] == ["劳动合同解除", "经济补偿"]


def test_no_terms_no_marks():
    assert term_spans("民法", []) == []
    assert term_spans("民法", [" "]) == []


def test_single_characters_are_not_marked_beside_words():
    assert display_terms(["经济补偿", "解除", "的"]) == ["经济补偿", "解除"]
    assert display_terms(["法"]) == ["法"]  # a one-character query still shows its match
