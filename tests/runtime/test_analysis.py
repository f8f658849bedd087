"""Analyzers: what a term is in each language (issue 2, point 3)."""

import pytest

from lexedge.runtime.analysis import (ChineseAnalyzer, JapaneseAnalyzer, WordAnalyzer,
                                      detect_language, get_analyzer)


def test_japanese_drops_particles_and_uses_base_forms():
    terms = JapaneseAnalyzer().tokens("民法第九十条は公の秩序に反する法律行為を無効とする。")
    assert "民法" in terms and "秩序" in terms and "法律" in terms
    assert "は" not in terms and "に" not in terms and "。" not in terms
    analyzer = JapaneseAnalyzer()  # conjugated forms share their base form
    assert analyzer.tokens("秩序に反し、") == analyzer.tokens("秩序に反す") == ["秩序", "反す"]


def test_japanese_nfkc_makes_fullwidth_digits_match():
    analyzer = JapaneseAnalyzer()
    assert set(analyzer.tokens("第１条")) == set(analyzer.tokens("第1条"))


def test_chinese_bigrams_and_unigrams():
    terms = ChineseAnalyzer().tokens("劳动合同，ABC公司")
    assert {"劳动", "动合", "合同", "劳", "同"} <= set(terms)
    assert "abc" in terms and "，" not in "".join(terms)
    assert "同，" not in terms  # bigrams never cross punctuation


def test_word_analyzer_folds_case_and_width():
    assert WordAnalyzer().tokens("GDPR Ａｒｔｉｃｌｅ 17") == ["gdpr", "article", "17"]


def test_language_detection():
    assert detect_language(["個人情報取扱事業者は、本人の同意を得なければならない。"]) == "ja"
    assert detect_language(["劳动者享有平等就业和选择职业的权利。"]) == "zh"
    assert detect_language(["The controller shall erase personal data."]) == "word"
    assert detect_language([]) == "word"


def test_manifest_round_trip():
    for analyzer in (JapaneseAnalyzer(), ChineseAnalyzer(unigrams=False), WordAnalyzer()):
        rebuilt = get_analyzer(analyzer.to_manifest())
        assert type(rebuilt) is type(analyzer)
        assert rebuilt.to_manifest() == analyzer.to_manifest()


@pytest.mark.parametrize("text", [
    "個人情報取扱事業者は、あらかじめ本人の同意を得ないで、個人データを第三者に提供してはならない。",
    "第一条\n改行を含む\n\n条文", "タブ\tを含む文", "EOS という語と\nEOS", "a, b「引用」（括弧）、読点",
    "ＡＢＣ１２３と全角", "絵文字😀を含む", "  空白  ", "", "\n"])
def test_japanese_terms_read_from_mecabs_text_equal_those_of_its_word_objects(text):
    """The analyzer splits MeCab's text output itself (twice as fast); each term must be the
    one fugashi's word objects give: surface, or base form for verbs and adjectives, with
    particles and symbols dropped."""
    from lexedge.runtime.analysis import normalize

    analyzer = JapaneseAnalyzer("ipadic")
    assert analyzer.tokens(text) == analyzer._word_tokens(normalize(text))
