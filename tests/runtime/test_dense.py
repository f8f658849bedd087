"""The hnswlib dense index: recall on clustered vectors, removal, persistence."""

import numpy as np

from lexedge.runtime.dense import DenseIndex

RECALL_THRESHOLD = 0.95


def clustered_vectors(n=3000, dim=32, clusters=40, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    vectors = centres[rng.integers(0, clusters, n)] + 0.3 * rng.normal(size=(n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_hnsw_recall_against_exact_search():
    vectors = clustered_vectors()
    queries = clustered_vectors(n=50, seed=1)
    index = DenseIndex.build(vectors)  # the defaults lexedge builds with
    labels, scores = index.search(queries, k=10)
    exact = np.argsort(-queries @ vectors.T, axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(labels, exact)])
    assert recall >= RECALL_THRESHOLD
    np.testing.assert_allclose(scores[:, 0], np.sum(queries * vectors[labels[:, 0]], axis=1),
                               atol=1e-4)


def test_removed_documents_never_come_back_until_re_added(tmp_path):
    vectors = clustered_vectors(n=200)
    index = DenseIndex.build(vectors)
    index.remove([5, 7])
    assert len(index) == 198
    labels, _ = index.search(vectors[[5, 7]], k=5)
    assert 5 not in labels and 7 not in labels
    index.save(tmp_path)
    reloaded = DenseIndex.load(tmp_path)
    assert len(reloaded) == 198 and reloaded.deleted == {5, 7}
    reloaded.add(vectors[[5]], np.array([5]))
    assert reloaded.search(vectors[5], k=1)[0][0, 0] == 5
    assert len(reloaded) == 199


def test_adding_new_labels_grows_the_graph():
    vectors = clustered_vectors(n=100)
    index = DenseIndex.build(vectors[:60])
    index.add(vectors[60:], np.arange(60, 100))
    assert len(index) == 100
    assert index.search(vectors[99], k=1)[0][0, 0] == 99
