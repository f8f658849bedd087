"""Exact dense search: what an index build writes up to EXACT_LIMIT vectors. Its results are
the true nearest neighbours, through removal, re-adding, filters and a save and load; past the
limit a build, or an update, writes an HNSW graph instead."""

import numpy as np
import pytest

from lexedge.runtime import dense
from lexedge.runtime.bundle import Bundle
from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.exact import ExactIndex
from lexedge.runtime.index import Index


def unit_vectors(n, dim=16, seed=0):
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def brute_force(queries, vectors, labels, k):
    scores = queries @ vectors.T
    best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.asarray(labels)[best], np.take_along_axis(scores, best, axis=1)


def test_exact_search_returns_the_true_top_k_with_its_scores():
    vectors, queries = unit_vectors(400), unit_vectors(20, seed=1)
    labels, scores = ExactIndex.build(vectors).search(queries, k=25)
    expected_labels, expected_scores = brute_force(queries, vectors, np.arange(400), 25)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-6)


def test_removed_labels_are_skipped_until_added_again_and_survive_a_reload(tmp_path):
    vectors = unit_vectors(200)
    index = ExactIndex.build(vectors)
    index.remove([5, 7])
    assert len(index) == 198
    assert not {5, 7} & set(index.search(vectors[[5, 7]], k=5)[0].ravel().tolist())
    index.save(tmp_path)
    reloaded = dense.load_dense(tmp_path)
    assert isinstance(reloaded, ExactIndex) and reloaded.deleted == {5, 7}
    replacement = unit_vectors(1, seed=9)
    reloaded.add(replacement, np.array([5]))  # re-added, with a new vector
    assert len(reloaded) == 199
    assert reloaded.search(replacement, k=1)[0][0, 0] == 5
    np.testing.assert_array_equal(reloaded.vectors([5]), replacement)


def test_new_labels_extend_the_index_and_a_filter_searches_only_its_labels():
    vectors = unit_vectors(120)
    index = ExactIndex.build(vectors[:100])
    index.add(vectors[100:], np.arange(100, 120))
    assert len(index) == 120 and index.search(vectors[119], k=1)[0][0, 0] == 119
    index.remove([3])
    allowed = frozenset({3, 10, 50, 110, 999})  # 3 is removed, 999 was never there
    labels, _ = index.search(vectors[:4], k=10, allowed=allowed)
    assert labels.shape == (4, 3) and set(labels.ravel().tolist()) == {10, 50, 110}
    expected, _ = brute_force(vectors[:4], vectors[[10, 50, 110]], [10, 50, 110], 3)
    np.testing.assert_array_equal(labels, expected)


def test_an_index_build_searches_exactly_up_to_the_limit(tiny_dataset, tiny_bundle, tmp_path):
    index = Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx",
                        bundle=Bundle.load(tiny_bundle), progress=False)
    assert isinstance(index.dense, ExactIndex)
    assert not (index.path / "dense" / dense.GRAPH_FILE).exists()
    rows = np.arange(len(index))
    stored = index.dense.vectors(rows)
    query = index.bundle.embedder().encode(["労働時間"], kind="query")
    labels, _ = index.dense.search(query, k=len(rows))
    np.testing.assert_array_equal(labels, brute_force(query, stored, rows, len(rows))[0])


def test_above_the_limit_a_build_writes_a_graph(tiny_dataset, tiny_bundle, tmp_path,
                                                monkeypatch):
    monkeypatch.setattr("lexedge.runtime.dense.EXACT_LIMIT", 3)
    index = Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx",
                        bundle=Bundle.load(tiny_bundle), progress=False)
    assert isinstance(index.dense, dense.DenseIndex)
    assert (index.path / "dense" / dense.GRAPH_FILE).is_file()


def test_an_exact_index_grown_past_the_limit_becomes_a_graph_of_its_live_vectors(monkeypatch):
    vectors = unit_vectors(300)
    index = ExactIndex.build(vectors[:250])
    index.remove([0, 1])
    index.add(vectors[250:], np.arange(250, 300))
    assert dense.fitted(index) is index  # within the limit: kept as it is
    monkeypatch.setattr("lexedge.runtime.dense.EXACT_LIMIT", 200)
    graph = dense.fitted(index)
    assert isinstance(graph, dense.DenseIndex) and len(graph) == 298
    np.testing.assert_array_equal(graph.vectors([2, 299]), vectors[[2, 299]])
    assert graph.search(vectors[299], k=1)[0][0, 0] == 299
    assert not {0, 1} & set(graph.search(vectors[:2], k=5)[0].ravel().tolist())


def test_a_dense_index_of_an_unknown_kind_is_refused_by_name(tmp_path):
    ExactIndex.build(unit_vectors(10)).save(tmp_path)
    params = tmp_path / "dense.json"
    params.write_text(params.read_text().replace('"exact"', '"ivf"'))
    with pytest.raises(LexedgeError, match=r"dense\.json: dense index kind 'ivf' is not one "
                                           r"this lexedge reads"):
        dense.load_dense(tmp_path)
