"""Hard negatives come from a rank window, never judged positives, and skip likely false
negatives (candidates scoring within a margin of the positive, or above it)."""

from lexedge.trainer.mining import select_hard_negatives

RANKING = [(f"d{i}", 1.0 - i * 0.01) for i in range(20)]


def test_window_and_judged_positives():
    negatives, counts = select_hard_negatives(RANKING, {"d3", "d12"}, window=[2, 8], limit=10)
    assert negatives == ["d2", "d4", "d5", "d6", "d7"]
    assert counts["judged"] == 1


def test_candidates_near_or_above_the_positive_are_skipped():
    # positive scores 0.95 (rank 5); margin 0.015 drops everything scoring >= 0.935
    negatives, counts = select_hard_negatives(RANKING, {"d5"}, window=[0, 12], limit=3,
                                              positive_score=0.95, margin=0.015)
    assert negatives == ["d7", "d8", "d9"]
    assert counts["above_positive"] == 6 and counts["judged"] == 1


def test_limit():
    negatives, _ = select_hard_negatives(RANKING, set(), window=[0, 20], limit=4)
    assert len(negatives) == 4
