"""BM25 on bm25s: ranking, persistence, memory-mapped loading (issue 2, point 4)."""

import os

import numpy as np

from lexedge.runtime.analysis import JapaneseAnalyzer
from lexedge.runtime.bm25 import BM25Index
from lexedge.runtime.datasets import iter_corpus
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
