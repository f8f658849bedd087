"""Filters that find (issue 23): a filter chooses the documents before BM25 and the dense
index rank them, so it never hides a matching article that was outside the unfiltered top K;
values are globs, a trailing ``/`` names a folder, and an unknown key is refused by name."""

import json

import pytest

from lexedge.cli import main
from lexedge.runtime.bundle import Bundle
from lexedge.runtime.datasets import Document
from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.filters import matches
from lexedge.runtime.index import Index
from lexedge.runtime.searcher import Searcher

# 民法 dominates the query; 刑法's one article shares a single term (者) with it
QUERY = "故意又は過失によって他人の権利を侵害した者"


def law_documents():
    return [{"id": f"m{i}", "title": f"民法 第{700 + i}条", "law": "民法",
             "source": f"civil/{i}.md",
             "text": f"故意又は過失によって他人の権利又は利益を侵害した者は損害を賠償する。第{i}項"}
            for i in range(1, 9)] + [
        {"id": "k1", "title": "刑法 第百九十九条", "law": "刑法", "source": "criminal/199.txt",
         "text": "人を殺した者は、死刑又は無期若しくは五年以上の懲役に処する。"}]


@pytest.fixture
def law_index(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in law_documents()),
                      encoding="utf-8")
    return Index.build(corpus, tmp_path / "idx", progress=False).path


def test_a_filter_finds_an_article_outside_the_unfiltered_top_k(law_index):
    searcher = Searcher(law_index)
    unfiltered = searcher.search(QUERY, budget=3, rerank=0)
    assert "k1" not in [h.id for h in unfiltered.hits]  # 刑法 is not in the top 3
    found = searcher.search(QUERY, budget=3, rerank=0, filters={"law": "刑法"})
    assert [h.id for h in found.hits] == ["k1"]


def test_a_filter_reaches_the_dense_index_too(tiny_dataset, tiny_bundle, tmp_path):
    index = Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx",
                        bundle=Bundle.load(tiny_bundle))
    searcher = Searcher(index)
    query = "本人の同意なしに個人データを第三者へ提供できますか"
    dense_only = searcher.search(query, budget=1, rerank=0, alpha=1.0)
    assert dense_only.hits[0].id != "d6"
    filtered = searcher.search(query, budget=1, rerank=0, alpha=1.0,
                               filters={"title": "著作権法*"})
    assert [h.id for h in filtered.hits] == ["d6"]
    assert "dense" in filtered.hits[0].scores


def test_values_are_globs_and_a_trailing_slash_is_a_folder(law_index):
    searcher = Searcher(law_index)
    assert {h.id for h in searcher.search("者", top=20, filters={"source": "*.txt"}).hits} \
        == {"k1"}
    assert {h.id for h in searcher.search("者", top=20, filters={"source": "civil/"}).hits} \
        == {f"m{i}" for i in range(1, 9)}
    assert searcher.search("者", top=20, filters={"source": "civil"}).hits == []
    assert {h.id for h in searcher.search("者", top=20,
                                          filters={"title": "民法 第70[12]条"}).hits} \
        == {"m1", "m2"}


def test_an_unknown_filter_key_is_refused_with_the_fields_there_are(law_index, capsys):
    with pytest.raises(LexedgeError, match=r"--filter folder=…: no document in this index "
                                           r"has the field 'folder' \(fields: id, law, "
                                           r"source, title\)"):
        Searcher(law_index).search("者", filters={"folder": "civil/"})
    assert main(["search", "者", "--index", str(law_index), "--filter", "folder=civil/"]) == 2
    assert "no document in this index has the field 'folder'" in capsys.readouterr().err


def test_matching_rules():
    document = Document("a#1", "…", "民法 第九十条", {"source": "contracts/2024/nda.md"})
    assert matches(document, {"source": "contracts/"})
    assert matches(document, {"source": "*.md", "title": "民法*"})
    assert matches(document, {"id": "a#1"})
    assert not matches(document, {"source": "contracts"})
    assert not matches(document, {"source": "*.txt"})
    assert not matches(document, {"law": "民法"})  # a field this document lacks


@pytest.mark.parametrize("exact_limit", [0, 10_000])  # the graph's filter; exact vectors
def test_the_dense_filter_returns_the_best_allowed_labels(monkeypatch, exact_limit):
    import numpy as np

    from lexedge.runtime import dense

    monkeypatch.setattr(dense, "EXACT_FILTER_LIMIT", exact_limit)
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(500, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = dense.DenseIndex.build(vectors, np.arange(500))
    allowed = frozenset(range(0, 500, 7))
    labels, scores = index.search(vectors[:1], 5, allowed=allowed)
    expected = sorted(allowed, key=lambda label: -float(vectors[label] @ vectors[0]))[:5]
    assert labels[0].tolist() == expected
    assert scores[0] == pytest.approx([float(vectors[e] @ vectors[0]) for e in expected],
                                      abs=1e-5)
