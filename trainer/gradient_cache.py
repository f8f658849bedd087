"""A cached contrastive loss for large batches in small memory (GradCache: Gao et al., 2021,
"Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup",
arXiv:2101.06983; sentence-transformers' ``CachedMultipleNegativesRankingLoss``).

The loss needs every vector of the batch at once, but not every activation: the vectors are
computed chunk by chunk without a graph, the loss and its gradient with respect to the
vectors are computed on them, and each chunk is then run again with its graph and
back-propagated with its share of that gradient. Memory grows with the chunk, not the batch;
the gradient is the uncached one (each chunk's dropout is replayed from its saved random
state). Under several processes every chunk but the last back-propagates without DDP's
all-reduce, which the last one does for the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager, nullcontext

import torch


class Backpropagated(torch.Tensor):
    """A loss value whose gradients are already in the parameters: the training loop must
    not call ``backward`` on it."""


@contextmanager
def _replayed(state: tuple):
    """Run with the random state ``state`` (CPU, and CUDA when it was saved), then go on
    from where the random streams were."""
    cpu, cuda = torch.get_rng_state(), torch.cuda.get_rng_state_all() \
        if torch.cuda.is_available() else None
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def _random_state() -> tuple:
    return (torch.get_rng_state(),
            torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)


def cached_backward(model, chunks: list[dict], loss_of: Callable[[list[torch.Tensor]],
                                                                  torch.Tensor]) -> torch.Tensor:
    """Back-propagate ``loss_of(vectors of every chunk)`` through ``model`` chunk by chunk.

    Args:
        model: the encoder (possibly DDP-wrapped): ``model(**chunk)`` gives vectors.
        chunks: model inputs, a few rows each.
        loss_of: the loss from the list of every chunk's vectors (in order).

    Returns:
        The loss value, as :class:`Backpropagated`.
    """
    states, vectors = [], []
    with torch.no_grad():
        for chunk in chunks:
            states.append(_random_state())
            vectors.append(model(**chunk))
    leaves = [v.detach().requires_grad_() for v in vectors]
    loss = loss_of(leaves)
    loss.backward()
    ddp = isinstance(model, torch.nn.parallel.DistributedDataParallel)
    after = _random_state()
    for i, (chunk, state, leaf) in enumerate(zip(chunks, states, leaves)):
        last = i == len(chunks) - 1
        with (nullcontext() if last or not ddp else model.no_sync()), _replayed(state):
            model(**chunk).backward(leaf.grad)
    torch.set_rng_state(after[0])
    if after[1] is not None:
        torch.cuda.set_rng_state_all(after[1])
    return loss.detach().as_subclass(Backpropagated)


def row_chunks(inputs: dict, size: int) -> list[dict]:
    """Tokenised inputs cut into chunks of ``size`` rows."""
    rows = next(iter(inputs.values())).shape[0]
    return [{k: v[start:start + size] for k, v in inputs.items()}
            for start in range(0, rows, size)]
