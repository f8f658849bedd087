"""Mining scans the corpus in chunks: exact top-k, never a queries × corpus score matrix."""

import numpy as np
import pytest

from lexedge.trainer import mining


@pytest.mark.parametrize("chunk_size, query_block", [(7, 3), (50, 4), (1000, 1000)])
def test_chunked_top_k_equals_brute_force(chunk_size, query_block):
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(10, 16)).astype(np.float32)
    corpus = rng.normal(size=(103, 16)).astype(np.float32)
    scores, indices = mining.streaming_top_k(queries, corpus, 12, chunk_size=chunk_size,
                                             query_block=query_block)
    full = queries @ corpus.T
    expected = np.argsort(-full, axis=1, kind="stable")[:, :12]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(full, expected, 1), rtol=1e-6)


def test_no_score_block_is_queries_by_corpus(monkeypatch):
    shapes = []
    real = mining._score_block

    def recording(block, chunk):
        shapes.append((len(block), len(chunk)))
        return real(block, chunk)

    monkeypatch.setattr(mining, "_score_block", recording)
    rng = np.random.default_rng(1)
    queries = rng.normal(size=(9, 8)).astype(np.float32)
    corpus = rng.normal(size=(40, 8)).astype(np.float32)
    mining.streaming_top_k(queries, corpus, 5, chunk_size=16, query_block=4)
    assert shapes and all(q <= 4 and c <= 16 for q, c in shapes)
    assert (9, 40) not in shapes


def test_k_larger_than_corpus_returns_everything_sorted():
    corpus = np.eye(3, dtype=np.float32)
    scores, indices = mining.streaming_top_k(np.array([[0.1, 0.9, 0.5]], np.float32), corpus, 10)
    assert indices.tolist() == [[1, 2, 0]]
