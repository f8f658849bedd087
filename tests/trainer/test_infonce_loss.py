"""InfoNCE: cross-entropy over in-batch and hard negatives, with judged positives masked."""

import math

import torch

from lexedge.trainer.losses import InfoNCELoss


def test_matches_the_formula():
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    p = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    targets = torch.tensor([0, 1, 2])
    loss = InfoNCELoss(0.05)(q, p, targets)
    logits = q @ p.T / 0.05
    expected = -sum(float(logits[i, i]) - math.log(float(logits[i].exp().sum()))
                    for i in range(3)) / 3
    assert abs(float(loss) - expected) < 1e-4


def test_excluded_columns_are_not_negatives():
    q = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # column 1: another positive
    exclude = torch.tensor([[False, True, False]])
    masked = InfoNCELoss(1.0)(q, p, torch.tensor([0]), exclude)
    unmasked = InfoNCELoss(1.0)(q, p, torch.tensor([0]))
    assert float(masked) < float(unmasked)
    expected = -(1.0 - math.log(math.e + 1.0))
    assert abs(float(masked) - expected) < 1e-5
