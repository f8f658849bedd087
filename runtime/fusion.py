"""Fusing the first stage's ranked lists (dense and BM25) into one.

* ``weighted``: each list's scores are min–max normalised over its own candidates, then
  combined as ``alpha * dense + (1 - alpha) * bm25`` (a document missing from a list gets 0
  there). This is the weighted-score ensemble of 2412.19265 and 2412.13205 (lexical + semantic
  signals), with normalisation so BM25's unbounded scores and cosine similarities can be mixed.
* ``rrf``: reciprocal rank fusion, ``Σ 1 / (k + rank)`` (Cormack et al., SIGIR 2009), which
  needs no score calibration at all.

After the cross-encoder, :func:`interpolate` mixes its scores with the first stage's over the
re-ranked head (``rerank_weight`` 1 is pure re-ranking): the same normalised weighted sum,
so a reranker that is weaker than the first stage alone can still add the signal it has
(score interpolation, as in Pyserini's hybrid re-ranking; 2412.19265 ensembles BM25 and the
dense model the same way).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .settings import DEFAULT_ALPHA, FUSIONS, SearchSettings

Ranking = Sequence[tuple[str, float]]


def min_max(ranking: Ranking) -> dict[str, float]:
    """Scores rescaled to [0, 1] within the list; a list of equal scores maps to 1."""
    return dict(zip((doc for doc, _ in ranking), _unit_scale([s for _, s in ranking])))


def _unit_scale(scores: Sequence[float]) -> list[float]:
    if not scores:
        return []
    low, high = min(scores), max(scores)
    span = high - low
    return [(s - low) / span if span > 0 else 1.0 for s in scores]


def weighted_fusion(rankings: Mapping[str, Ranking], weights: Mapping[str, float],
                    k: int) -> list[tuple[str, float]]:
    """Normalised weighted sum over the named lists, top ``k``, ties broken by doc id."""
    fused: dict[str, float] = {}
    for name, ranking in rankings.items():
        weight = weights.get(name, 0.0)
        for doc, score in min_max(ranking).items():
            fused[doc] = fused.get(doc, 0.0) + weight * score
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]


def rrf_fusion(rankings: Mapping[str, Ranking], k: int, constant: int = 60,
               ) -> list[tuple[str, float]]:
    fused: dict[str, float] = {}
    for ranking in rankings.values():
        for rank, (doc, _) in enumerate(ranking, start=1):
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (constant + rank)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]


def interpolate(head: Ranking, rerank_scores: Sequence[float], weight: float,
                ) -> list[tuple[str, float, float]]:
    """Re-order a first-stage ``head`` by ``weight * reranker + (1 - weight) * first stage``,
    both min-max normalised over the head; returns ``(doc, final, rerank)`` best first, ties
    in the first stage's order. ``weight`` 1 sorts by the reranker alone."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"rerank weight must be within [0, 1], got {weight}")
    if len(head) != len(rerank_scores):
        raise ValueError(f"{len(head)} candidates but {len(rerank_scores)} reranker scores")
    rerank = [float(s) for s in rerank_scores]
    if weight == 1.0:
        final = rerank
    else:
        final = [weight * r + (1.0 - weight) * f for r, f in
                 zip(_unit_scale(rerank), _unit_scale([s for _, s in head]))]
    order = sorted(range(len(head)), key=lambda i: -final[i])  # stable: first-stage order
    return [(head[i][0], final[i], rerank[i]) for i in order]


def fuse(dense: Ranking, bm25: Ranking, k: int, method: str = SearchSettings.fusion,
         alpha: float = DEFAULT_ALPHA) -> list[tuple[str, float]]:
    """Fuse a dense and a BM25 list; ``alpha`` is the dense weight for ``weighted``
    (defaults: :class:`~lexedge.runtime.settings.SearchSettings`'s fusion and
    :data:`~lexedge.runtime.settings.DEFAULT_ALPHA`)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be within [0, 1], got {alpha}")
    rankings = {"dense": dense, "bm25": bm25}
    if method == "rrf":
        return rrf_fusion(rankings, k)
    if method == "weighted":
        return weighted_fusion(rankings, {"dense": alpha, "bm25": 1.0 - alpha}, k)
    raise ValueError(f"unknown fusion {method!r} (choose {' or '.join(FUSIONS)})")
