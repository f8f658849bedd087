import numpy as np

from lexedge.export.parity import Gates, evaluate_gates, tie_aware_overlap


def test_a_swap_inside_a_near_tie_is_not_a_disagreement():
    reference = np.array([[0.90, 0.80, 0.700, 0.6995, 0.20]])
    swapped = np.array([[0, 1, 3]])      # rank 3 and 4 nearly tied in the reference
    assert tie_aware_overlap(reference, swapped, k=3, tolerance=0.001) == 1.0
    assert tie_aware_overlap(reference, swapped, k=3, tolerance=0.0) == 2 / 3


def test_a_real_disagreement_still_counts():
    reference = np.array([[0.90, 0.80, 0.70, 0.60, 0.20]])
    wrong = np.array([[0, 1, 4]])        # 0.20 is far below the third score 0.70
    assert tie_aware_overlap(reference, wrong, k=3, tolerance=0.05) == 2 / 3


def test_the_overlap_gate_reads_the_tie_aware_value():
    parity = {"export_check": {"cosine_min": 1.0},
              "quantization": {"cosine_mean": 0.995, "top10_overlap": 0.86,
                               "top10_overlap_tie_aware": 0.97}}
    results = {r["gate"]: r for r in evaluate_gates("embedder", parity, Gates())}
    assert results["embedder.top10_overlap_tie_aware"]["passed"]
    parity["quantization"]["top10_overlap_tie_aware"] = 0.85
    results = {r["gate"]: r for r in evaluate_gates("embedder", parity, Gates())}
    assert not results["embedder.top10_overlap_tie_aware"]["passed"]
