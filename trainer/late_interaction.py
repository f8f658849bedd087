"""A late-interaction head over a frozen embedder's token states (issue 19, item 3).

ColBERT scores a passage by each query token's best match among the passage's tokens
(MaxSim; Khattab and Zaharia, 2020, arXiv:2004.12832). Here the tokens are the unit-length
last-layer states of the bundle's own INT8 embedder, as onnxruntime serves them, and only a
small head is trained on top: a square projection that starts as the identity (the untrained
head is plain MaxSim over the embedder's states) and a weight per query token that starts
equal for all (softplus of a linear gate, so the head can learn to discount prefix and
function tokens). Training reads the first stage's own top candidates for the training
queries: the mistakes the reranker exists to fix.

Why a head and not a fine-tuned encoder: the states are computed once, as served, and the
head trains in minutes on two cores. A 3-layer cross-encoder trained on the same 1,294
questions stayed below the first stage it was to re-score (``docs/results.md``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

# softplus(GATE_START) = 1: every query token weighs the same before training
GATE_START = float(np.log(np.expm1(1.0)))


@dataclass
class HeadConfig:
    """How the head is trained.

    Args:
        epochs: passes over the training queries (3: the STARD and ja_appi dev sets' choice
            among 1-4 at ``learning_rate`` 3e-4, ``docs/results.md``).
        learning_rate: AdamW's.
        temperature: divides the MaxSim scores in the listwise loss.
        queries_per_step: training queries per optimiser step.
        seed: shuffling.
        dimension: the width of the projected token states; ``None`` keeps the embedder's
            (a square projection starting as the identity). A narrower head starts as the
            projection onto the states' principal directions: what an index storing each
            passage's states would hold per token (``bench/stored_states.py``).
    """

    epochs: int = 3
    learning_rate: float = 3e-4
    temperature: float = 0.05
    queries_per_step: int = 16
    seed: int = 0
    dimension: int | None = None


@dataclass
class Example:
    """One training query: its token-state key, its judged passages' keys (positives) and
    the first stage's other top candidates (negatives)."""

    query: str
    positives: list[str]
    negatives: list[str]


class LateInteractionHead(torch.nn.Module):
    """Projection and query-token weights over unit token states of width ``width``, the
    projected states ``dimension`` wide (default ``width``: the projection starts as the
    identity; narrower, it starts as ``directions`` [dimension, width], orthonormal rows).

    Example:
        >>> head = LateInteractionHead(4)
        >>> q = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
        >>> p = [torch.nn.functional.normalize(torch.randn(5, 4), dim=-1)]
        >>> head.score(q, p).shape
        torch.Size([1])
    """

    def __init__(self, width: int, dimension: int | None = None,
                 directions: np.ndarray | None = None):
        super().__init__()
        dimension = width if dimension is None else dimension
        if directions is None and dimension != width:
            raise ValueError(f"a head {dimension} wide over states {width} wide starts from "
                             "given directions")
        self.projection = torch.nn.Linear(width, dimension, bias=False)
        self.gate = torch.nn.Linear(width, 1)
        with torch.no_grad():
            self.projection.weight.copy_(torch.eye(width) if directions is None
                                         else torch.from_numpy(np.asarray(
                                             directions, dtype=np.float32)))
            self.gate.weight.zero_()
            self.gate.bias.fill_(GATE_START)

    def tokens(self, states: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.projection(states), dim=-1)

    def weights(self, states: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.softplus(self.gate(states)).squeeze(-1)

    def score(self, query: torch.Tensor, passages: Sequence[torch.Tensor]) -> torch.Tensor:
        """MaxSim of each passage ``[tokens, width]`` for ``query`` ``[tokens, width]``."""
        query_tokens, query_weights = self.tokens(query), self.weights(query)
        longest = max(p.shape[0] for p in passages)
        padded = torch.zeros(len(passages), longest, query.shape[1])
        real = torch.zeros(len(passages), longest, dtype=torch.bool)
        for row, passage in enumerate(passages):
            padded[row, :passage.shape[0]] = passage
            real[row, :passage.shape[0]] = True
        similarity = torch.einsum("qd,npd->nqp", query_tokens, self.tokens(padded))
        best = similarity.masked_fill(~real[:, None, :], -2.0).max(dim=-1).values
        return (best * query_weights).sum(dim=-1) / query_weights.sum()

    def tensors(self) -> dict[str, np.ndarray]:
        """The head as plain arrays, the form the ONNX graph takes them in."""
        return {"projection": self.projection.weight.detach().numpy().T.copy(),
                "gate_weight": self.gate.weight.detach().numpy()[0].copy(),
                "gate_bias": self.gate.bias.detach().numpy().copy()}


def principal_directions(states, dimension: int, seed: int = 0,
                         sample: int = 200_000) -> np.ndarray:
    """The ``dimension`` directions [dimension, width] that keep most of the token states'
    energy (uncentred: MaxSim compares them by dot products), from at most ``sample``
    tokens."""
    tokens = np.concatenate([np.asarray(value, dtype=np.float32) for value in states])
    if len(tokens) > sample:
        tokens = tokens[np.random.default_rng(seed).choice(len(tokens), sample, replace=False)]
    return np.linalg.svd(tokens, full_matrices=False)[2][:dimension].copy()


def listwise_loss(scores: torch.Tensor, positives: int, temperature: float) -> torch.Tensor:
    """``-log`` of the softmax mass on the first ``positives`` scores (several judged
    passages may each be right)."""
    scaled = scores / temperature
    return torch.logsumexp(scaled, 0) - torch.logsumexp(scaled[:positives], 0)


def train_head(examples: Sequence[Example], states: Mapping[str, np.ndarray],
               config: HeadConfig = HeadConfig(),
               log: Callable[[str], None] = print) -> LateInteractionHead:
    """Train a head on ``examples`` over ``states`` (key -> float [tokens, width], unit rows,
    as the untrained late-interaction graph gives them)."""
    if not examples:
        raise ValueError("no training queries with both a judged passage and a negative")
    torch.manual_seed(config.seed)
    width = next(iter(states.values())).shape[1]
    dimension = width if config.dimension is None else config.dimension
    if not 1 <= dimension <= width:
        raise ValueError(f"head dimension {dimension}: must be within 1-{width} (the states' "
                         "width)")
    head = LateInteractionHead(width, dimension, None if dimension == width
                               else principal_directions(states.values(), dimension,
                                                         config.seed))
    optimiser = torch.optim.AdamW(head.parameters(), lr=config.learning_rate, weight_decay=0.0)
    tensor = {key: torch.from_numpy(np.asarray(value, dtype=np.float32))
              for key, value in states.items()}
    order = list(examples)
    shuffle = random.Random(config.seed).shuffle
    for epoch in range(1, config.epochs + 1):
        shuffle(order)
        total = 0.0
        for start in range(0, len(order), config.queries_per_step):
            step = order[start:start + config.queries_per_step]
            loss = sum(listwise_loss(head.score(tensor[e.query], [tensor[k] for k in
                                                                  e.positives + e.negatives]),
                                     len(e.positives), config.temperature) for e in step)
            loss = loss / len(step)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(step)
        log(f"late interaction: epoch {epoch}/{config.epochs}, loss {total / len(order):.4f}")
    return head
