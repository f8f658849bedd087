"""A change costs what it changes (issue 23): adding or removing documents analyses only the
new ones (each document's terms are kept in the index), and gives the BM25 arrays a full
rebuild over the same documents gives."""

import json

import numpy as np

from lexedge.runtime import bm25 as bm25_module
from lexedge.runtime.datasets import Document
from lexedge.runtime.index import Index
from lexedge.runtime.searcher import Searcher


def write_corpus(path, documents):
    path.write_text("".join(json.dumps({"id": d.id, "title": d.title, "text": d.text},
                                       ensure_ascii=False) + "\n" for d in documents),
                    encoding="utf-8")
    return path


DOCUMENTS = [Document(f"a{i}", f"第{i}条の本文。賃借人は賃料を支払う義務を負う。条項{i}は有効とする。",
                      f"契約 第{i}条") for i in range(1, 40)]
NEW = [Document("n1", "売主は目的物を引き渡す義務を負う。", "売買 第一条"),
       Document("n2", "買主は代金を支払う義務を負う。", "売買 第二条")]


def test_a_change_analyses_only_the_new_documents(tmp_path, monkeypatch):
    index = Index.build(write_corpus(tmp_path / "c.jsonl", DOCUMENTS), tmp_path / "idx",
                        progress=False)
    analysed = []
    original = index.analyzer.tokens
    monkeypatch.setattr(type(index.analyzer), "tokens",
                        lambda self, text: analysed.append(text) or original(text))
    changed = index.add(NEW).remove(["a3", "a7"])
    assert sorted(analysed) == sorted(d.indexed_text for d in NEW)
    expected = DOCUMENTS[:2] + DOCUMENTS[3:6] + DOCUMENTS[7:] + NEW
    rebuilt = Index.build(write_corpus(tmp_path / "all.jsonl", expected), tmp_path / "full",
                          progress=False)
    assert changed.bm25.doc_ids == rebuilt.bm25.doc_ids
    for name in ("data.csc.index.npy", "indices.csc.index.npy", "indptr.csc.index.npy",
                 "vocab.index.json", bm25_module.TERMS_FILE, bm25_module.VOCABULARY_FILE):
        ours, theirs = changed.path / "bm25" / name, rebuilt.path / "bm25" / name
        if name.endswith(".npy"):
            assert np.array_equal(np.load(ours), np.load(theirs)), name
        else:
            assert ours.read_text(encoding="utf-8") == theirs.read_text(encoding="utf-8"), name
    assert [h.id for h in Searcher(changed.path).search("代金を支払う", rerank=0).hits] == \
        [h.id for h in Searcher(rebuilt.path).search("代金を支払う", rerank=0).hits]


def test_the_terms_are_saved_with_the_index(tmp_path):
    index = Index.build(write_corpus(tmp_path / "c.jsonl", DOCUMENTS[:5]), tmp_path / "idx",
                        progress=False)
    for name in (bm25_module.TERMS_FILE, bm25_module.TERM_OFFSETS_FILE,
                 bm25_module.VOCABULARY_FILE):
        assert (index.path / "bm25" / name).is_file()
    assert not bm25_module.BM25Index.has_terms(tmp_path / "nowhere")
