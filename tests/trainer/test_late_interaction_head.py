"""The late-interaction head learns which query tokens matter (issue 19, item 3)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lexedge.trainer.late_interaction import (Example, HeadConfig,  # noqa: E402
                                              LateInteractionHead, train_head)

WIDTH = 12


def _unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def _task(random, count):
    """Queries of 2 signal and 4 noise tokens: the judged passage holds the signal tokens,
    the negatives the noise ones, so plain MaxSim (every token weighed alike) prefers the
    negatives and only learned token weights put the judged passage first."""
    basis = np.eye(WIDTH, dtype=np.float32)
    signal, noise = basis[:6], basis[6:]
    states, examples = {}, []
    for number in range(count):
        picked_signal = signal[random.choice(6, 2, replace=False)]
        picked_noise = noise[random.choice(6, 4, replace=False)]
        jitter = lambda rows: _unit(rows + 0.05 * random.normal(size=rows.shape))  # noqa: E731
        states[f"q{number}"] = jitter(np.concatenate([picked_signal, picked_noise]))
        states[f"p{number}"] = jitter(np.concatenate([picked_signal, signal[:1] * 0 + 0.3]))
        states[f"n{number}"] = jitter(np.concatenate([picked_noise, noise[:1] * 0 + 0.3]))
        examples.append(Example(f"q{number}", [f"p{number}"], [f"n{number}"]))
    return states, examples


def _margin(head, states, examples):
    with torch.no_grad():
        return float(np.mean([
            float(torch.diff(head.score(torch.from_numpy(states[e.query]), [
                torch.from_numpy(states[e.negatives[0]]),
                torch.from_numpy(states[e.positives[0]])]))) for e in examples]))


def test_an_untrained_head_is_plain_maxsim():
    states, examples = _task(np.random.default_rng(0), 4)
    head = LateInteractionHead(WIDTH)
    query, passage = states["q0"], states["p0"]
    with torch.no_grad():
        score = float(head.score(torch.from_numpy(query), [torch.from_numpy(passage)])[0])
    assert score == pytest.approx(float((query @ passage.T).max(1).mean()), abs=1e-5)


def test_training_puts_the_judged_passage_above_the_negatives_on_unseen_queries():
    train_states, train_examples = _task(np.random.default_rng(1), 64)
    held_states, held_examples = _task(np.random.default_rng(2), 32)
    untrained = LateInteractionHead(WIDTH)
    assert _margin(untrained, held_states, held_examples) < 0  # plain MaxSim gets it wrong
    head = train_head(train_examples, train_states,
                      HeadConfig(epochs=10, learning_rate=3e-2), log=lambda line: None)
    assert _margin(head, held_states, held_examples) > 0.05


def test_a_narrow_head_starts_as_the_projection_onto_the_principal_directions():
    # an index storing passage states would store them this wide (bench/stored_states.py)
    states, examples = _task(np.random.default_rng(0), 16)
    narrow = train_head(examples, states, HeadConfig(epochs=0, dimension=5),
                        log=lambda line: None)
    assert narrow.projection.weight.shape == (5, WIDTH)
    tokens = np.concatenate(list(states.values()))
    kept = np.linalg.norm(tokens @ narrow.tensors()["projection"]) ** 2
    # no 5 directions keep more of the tokens' energy than the top 5 principal ones
    singular = np.linalg.svd(tokens, compute_uv=False)
    assert kept == pytest.approx(float(np.sum(singular[:5] ** 2)), rel=1e-4)
    with pytest.raises(ValueError, match="1-12"):
        train_head(examples, states, HeadConfig(dimension=13), log=lambda line: None)


def test_a_narrow_head_still_learns_which_query_tokens_matter():
    train_states, train_examples = _task(np.random.default_rng(1), 64)
    held_states, held_examples = _task(np.random.default_rng(2), 32)
    head = train_head(train_examples, train_states,
                      HeadConfig(epochs=10, learning_rate=3e-2, dimension=8),
                      log=lambda line: None)
    assert _margin(head, held_states, held_examples) > 0.05
