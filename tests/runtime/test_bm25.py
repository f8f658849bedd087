"""BM25 on bm25s: ranking, persistence, memory-mapped loading (issue 2, point 4)."""

import os

import numpy as np
import pytest

from lexedge.runtime import bm25 as bm25_module
from lexedge.runtime.analysis import JapaneseAnalyzer, WordAnalyzer
from lexedge.runtime.bm25 import BM25Index
from lexedge.runtime.datasets import Document, iter_corpus
from lexedge.runtime.index import Index
from lexedge.runtime.searcher import Searcher


def test_relevant_article_ranks_first(tiny_dataset):
    bm25 = BM25Index.build(iter_corpus(tiny_dataset / "corpus.jsonl"), JapaneseAnalyzer())
    assert bm25.search("本人の同意なしに個人データを第三者へ提供", k=3)[0][0] == "d4"
    assert bm25.search("損害賠償", k=3)[0][0] == "d2"


def test_title_is_indexed(tiny_dataset):
    bm25 = BM25Index.build(iter_corpus(tiny_dataset / "corpus.jsonl"), JapaneseAnalyzer())
    assert bm25.search("著作権法", k=1)[0][0] == "d6"  # "著作権法" appears only in a title


def test_no_shared_term_returns_nothing(tiny_dataset):
    bm25 = BM25Index.build(iter_corpus(tiny_dataset / "corpus.jsonl"), JapaneseAnalyzer())
    assert bm25.search("", k=5) == []
    assert bm25.search("zzzz qqqq", k=5) == []
    assert len(bm25.search("法律", k=100)) <= len(bm25)  # k larger than the corpus


def test_saved_index_loads_memory_mapped_and_scores_identically(tiny_dataset, tmp_path):
    index = Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx", progress=False)
    assert index.manifest["analyzer"] == {"name": "ja", "dictionary": "ipadic"}
    reloaded = Index.load(tmp_path / "idx")
    assert isinstance(reloaded.bm25.retriever.scores["data"], np.memmap)
    query = "他人の権利を侵害した損害"
    assert reloaded.bm25.search(query, 6) == index.bm25.search(query, 6)
    hit = Searcher(reloaded).search(query, top=1).hits[0].to_dict()
    assert hit["id"] == "d2" and hit["title"] == "民法 第七百九条"
    assert "侵害" in hit["matched_terms"] and "侵害" in hit["snippet"]


def test_saved_index_contains_no_pickle(tiny_dataset, tmp_path):
    Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx", progress=False)
    for path in (tmp_path / "idx").rglob("*.npy"):
        np.load(path, allow_pickle=False)  # raises if any array needed pickle


def test_search_never_takes_bm25s_jax_top_k(tiny_dataset, monkeypatch):
    # bm25s picks JAX for top-k wherever JAX is installed; on a GPU machine JAX then claims
    # most of the GPU. Pretend JAX is there and fails: lexedge's search must not reach it.
    import bm25s.selection

    def jax_top_k(*_args, **_kwargs):
        raise AssertionError("bm25s' JAX top-k was used")

    monkeypatch.setattr(bm25s.selection, "JAX_IS_AVAILABLE", True)
    monkeypatch.setattr(bm25s.selection, "_topk_jax", jax_top_k)
    bm25 = BM25Index.build(iter_corpus(tiny_dataset / "corpus.jsonl"), JapaneseAnalyzer())
    assert bm25.search("損害賠償", k=3)[0][0] == "d2"


def test_bm25s_import_keeps_jax_off_the_gpu_unless_the_caller_chose(tiny_dataset, monkeypatch):
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    BM25Index.build(iter_corpus(tiny_dataset / "corpus.jsonl"), JapaneseAnalyzer())
    assert os.environ["JAX_PLATFORMS"] == "cpu"
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    BM25Index.build(iter_corpus(tiny_dataset / "corpus.jsonl"), JapaneseAnalyzer())
    assert os.environ["JAX_PLATFORMS"] == "cuda"


@pytest.mark.parametrize("k1, b, block", [(1.2, 0.75, bm25_module.PAIR_BLOCK), (0.9, 0.3, 97)])
def test_score_matrix_equals_the_one_bm25s_builds_bit_for_bit(k1, b, block, monkeypatch):
    # lexedge builds bm25s' score matrix in numpy passes, a block of pairs at a time (bm25s'
    # own loop took 9 s over the full STARD corpus); it must be bm25s' matrix exactly, or
    # scores would drift
    import bm25s

    monkeypatch.setattr(bm25_module, "PAIR_BLOCK", block)  # 97: many blocks, a short last one
    rng = np.random.default_rng(7)
    words = [f"w{i}" for i in range(400)]  # the last ones never used: no document has them
    texts = [" ".join(rng.choice(words[:350], size=n)) for n in rng.integers(1, 80, size=600)]
    texts += ["w3 w3 w3 w3 w3", "w349"]  # one term repeated; a term used once in the corpus
    documents = [Document(id=f"d{i}", text=text) for i, text in enumerate(texts)]
    built = BM25Index.build(documents, WordAnalyzer(), k1=k1, b=b)

    token_ids, vocabulary = built._terms
    reference = bm25s.BM25(k1=k1, b=b)
    reference.index((
        [ids.tolist() for ids in token_ids], {word: i for i, word in enumerate(vocabulary)}),
        show_progress=False)
    for part in ("data", "indices", "indptr"):
        ours, theirs = built.retriever.scores[part], reference.scores[part]
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs), part
    assert built.retriever.scores["num_docs"] == reference.scores["num_docs"] == len(texts)


def test_a_search_analyses_its_query_once_for_bm25_and_the_hits_terms(tiny_dataset, tmp_path):
    # a Japanese query costs MeCab a millisecond or more; BM25 and the hits' matched terms
    # take the same analysis
    Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx", progress=False)
    searcher = Searcher(tmp_path / "idx")
    analyzer, query = searcher.index.analyzer, "他人の権利を侵害した損害"
    calls = []
    original = analyzer.tokens
    analyzer.tokens = lambda text: calls.append(text) or original(text)
    hit = searcher.search(query, top=3).hits[0]
    assert hit.id == "d2" and "侵害" in hit.matched_terms
    assert calls.count(query) == 1


def test_the_terms_a_document_holds_are_read_from_the_index_as_analysing_it_finds_them(
        tiny_dataset, tmp_path):
    # a search shows each hit's matched terms from the score matrix instead of analysing the
    # hit again; after an update the matrix's rows are no longer the document store's
    index = Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx", progress=False)
    index = index.add([Document(id="new", title="追加の条文",
                                text="個人データを第三者に提供するには本人の同意を得なければならない。")])
    index = index.remove(["d1"])
    order = list(reversed(index.bm25.doc_ids))  # any order, not the rows'
    for query in ("他人の権利を侵害した損害", "本人の同意なしに個人データを第三者へ提供",
                  "著作権法の追加", "zzzz 存在しない語"):
        terms = set(index.analyzer.tokens(query))
        held = index.bm25.terms_held(order, terms)
        for doc_id, found in zip(order, held):
            text = index.document(doc_id).indexed_text
            assert found == terms & set(index.analyzer.tokens(text)), (query, doc_id)
    assert index.bm25.terms_held([], {"同意"}) == []
    assert index.bm25.terms_held(["d1", "not-indexed"], {"同意", "の"}) == [set(), set()]
