"""Training losses, one class each (as in sentence-transformers' ``losses/``)."""

from __future__ import annotations

import torch


class InfoNCELoss(torch.nn.Module):
    """Contrastive loss over in-batch and hard negatives (InfoNCE: van den Oord et al., 2018,
    arXiv:1807.03748; in-batch negatives for retrieval: Karpukhin et al., 2020, "DPR",
    arXiv:2004.04906).

    For query ``i`` the target is passage ``targets[i]``; every other passage of the batch —
    the other queries' positives and all hard negatives — is a negative, except those masked
    out (another judged positive of the same query must not be pushed away).

    Args:
        temperature: divides the cosine similarities; E5 was trained at 0.01, and 0.05 is a
            gentler choice for fine-tuning it.

    Example:
        >>> loss = InfoNCELoss(0.05)
        >>> q = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
        >>> p = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
        >>> float(loss(q, p, torch.tensor([0, 1]))) > 0
        True
    """

    def __init__(self, temperature: float = 0.05):
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        self.temperature = temperature

    def forward(self, queries: torch.Tensor, passages: torch.Tensor, targets: torch.Tensor,
                exclude: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            queries: ``[B, d]`` query embeddings.
            passages: ``[P, d]`` passage embeddings (positives and hard negatives).
            targets: ``[B]`` column of each query's positive.
            exclude: optional ``[B, P]`` boolean mask of columns that are not negatives for
                that query (never its own target).
        """
        logits = queries @ passages.T / self.temperature
        if exclude is not None:
            keep_target = torch.zeros_like(exclude)
            keep_target[torch.arange(len(targets)), targets] = True
            logits = logits.masked_fill(exclude & ~keep_target, float("-inf"))
        return torch.nn.functional.cross_entropy(logits, targets)


class ListwiseSoftmaxLoss(torch.nn.Module):
    """Listwise softmax cross-entropy over groups of one positive and n negatives (the
    "localized contrastive estimation" of cross-encoder rerankers: Gao et al., 2021,
    arXiv:2101.08751): each row of logits is a group with its positive in column 0.

    Example:
        >>> loss = ListwiseSoftmaxLoss()
        >>> right, wrong = torch.tensor([[5.0, 0.0, 0.0]]), torch.tensor([[0.0, 5.0, 0.0]])
        >>> float(loss(right)) < float(loss(wrong))
        True
    """

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits``: ``[groups, 1 + negatives]``, positive first."""
        targets = torch.zeros(len(logits), dtype=torch.long, device=logits.device)
        return torch.nn.functional.cross_entropy(logits, targets)


class ListwiseDistillationLoss(torch.nn.Module):
    """The listwise loss mixed with distillation from a teacher's scores over the same
    group: ``(1 - weight) * softmax cross-entropy + weight * KL(teacher || student)``, both
    distributions a softmax over the group (listwise distillation of a cross-encoder, as in
    RocketQAv2: Ren et al., 2021, arXiv:2110.07367). The teacher's soft targets grade every
    negative, which a one-hot target does not.

    Args:
        weight: the distillation share, in [0, 1].

    Example:
        >>> loss = ListwiseDistillationLoss(1.0)
        >>> teacher = torch.tensor([[2.0, 1.0, 0.0]])
        >>> float(loss(teacher, teacher)) < 1e-6 < float(loss(teacher.flip(1), teacher))
        True
    """

    def __init__(self, weight: float):
        super().__init__()
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"distillation weight must be within [0, 1], got {weight}")
        self.weight = weight
        self.listwise = ListwiseSoftmaxLoss()

    def forward(self, logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """``logits`` and ``teacher_logits``: ``[groups, 1 + negatives]``, positive first."""
        student = torch.nn.functional.log_softmax(logits, dim=-1)
        teacher = torch.nn.functional.log_softmax(teacher_logits.to(logits.dtype), dim=-1)
        distill = torch.nn.functional.kl_div(student, teacher, log_target=True,
                                             reduction="batchmean")
        return (1.0 - self.weight) * self.listwise(logits) + self.weight * distill
