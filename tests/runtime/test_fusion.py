"""First-stage fusion: normalised weighted scores and reciprocal rank fusion."""

import pytest

from lexedge.runtime.fusion import fuse, interpolate, min_max


def test_min_max_maps_to_unit_interval():
    assert min_max([("a", 12.0), ("b", 7.0), ("c", 2.0)]) == {"a": 1.0, "b": 0.5, "c": 0.0}
    assert min_max([("a", 3.0)]) == {"a": 1.0}


def test_weighted_alpha_extremes_reproduce_each_list():
    dense = [("a", 0.9), ("b", 0.8), ("c", 0.1)]
    bm25 = [("c", 30.0), ("b", 20.0), ("d", 1.0)]
    # (each list's last candidate normalises to 0 and ties with the other list's documents)
    assert [d for d, _ in fuse(dense, bm25, 2, alpha=1.0)] == ["a", "b"]
    assert [d for d, _ in fuse(dense, bm25, 2, alpha=0.0)] == ["c", "b"]


def test_weighted_rewards_agreement():
    dense = [("a", 0.9), ("b", 0.85), ("c", 0.1)]
    bm25 = [("c", 30.0), ("b", 25.0), ("d", 1.0)]
    assert fuse(dense, bm25, 1, alpha=0.5)[0][0] == "b"  # near the top of both lists


def test_rrf_ignores_score_scale():
    dense = [("a", 0.9), ("b", 0.8)]
    bm25 = [("b", 1000.0), ("a", 999.0)]
    fused = fuse(dense, bm25, 2, method="rrf")
    assert fused[0][1] == pytest.approx(fused[1][1])  # symmetric ranks, equal scores


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="alpha"):
        fuse([], [], 5, alpha=1.5)
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse([], [], 5, method="max")


def test_interpolation_runs_from_the_first_stage_to_the_reranker():
    head = [("a", 0.9), ("b", 0.8), ("c", 0.1)]  # first stage: a, b, c
    rerank = [0.0, 5.0, 10.0]                    # reranker: c, b, a
    assert [d for d, _, _ in interpolate(head, rerank, 1.0)] == ["c", "b", "a"]
    assert [d for d, _, _ in interpolate(head, rerank, 0.0)] == ["a", "b", "c"]
    # normalised first stage a 1, b 0.875, c 0; reranker a 0, b 0.5, c 1
    mixed = interpolate(head, rerank, 0.5)
    assert [d for d, _, _ in mixed] == ["b", "a", "c"]  # a and c tie at 0.5: first-stage order
    assert mixed[0][1] == pytest.approx(0.6875)
    assert [raw for _, _, raw in mixed] == [5.0, 0.0, 10.0]  # the reranker's own scores kept
    with pytest.raises(ValueError, match="rerank weight"):
        interpolate(head, rerank, 1.5)
    with pytest.raises(ValueError, match="3 candidates but 2"):
        interpolate(head, rerank[:2], 0.5)
