"""Hard-negative mining: exact top-k over corpus embeddings in bounded memory, and the choice
of negatives from a rank window with false-negative filtering (2412.13205's phase 2 mines
from the phase-1 model's predictions; 2602.00805's stages 2 and 3 mine from the current one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

Ranking = list[tuple[str, float]]


def _score_block(queries: np.ndarray, chunk: np.ndarray) -> np.ndarray:
    """Scores of a block of queries against a chunk of the corpus (kept separate so tests can
    check that no block is ever queries × corpus)."""
    return queries @ chunk.T


def streaming_top_k(queries: np.ndarray, corpus: np.ndarray, k: int, *,
                    chunk_size: int = 16384, query_block: int = 256,
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-``k`` of every query, best first, in bounded memory.

    The corpus is scanned in chunks of ``chunk_size`` rows for blocks of ``query_block``
    queries; a running top-k per query is merged with each chunk's by ``argpartition``, so
    memory is ``query_block × (chunk_size + k)`` scores, never ``queries × corpus``.

    Args:
        queries: ``[Q, d]`` float32.
        corpus: ``[N, d]`` float32 (a memory-mapped array works: it is read chunk by chunk).
        k: results per query (capped at ``N``).

    Returns:
        ``(scores, indices)``, each ``[Q, k]``; rows sorted by descending score, ties by
        ascending corpus index.
    """
    count = corpus.shape[0]
    k = min(k, count)
    all_scores = np.empty((len(queries), k), dtype=np.float32)
    all_indices = np.empty((len(queries), k), dtype=np.int64)
    for q_start in range(0, len(queries), query_block):
        block = np.asarray(queries[q_start:q_start + query_block], dtype=np.float32)
        best_scores = np.empty((len(block), 0), dtype=np.float32)
        best_indices = np.empty((len(block), 0), dtype=np.int64)
        for c_start in range(0, count, chunk_size):
            chunk = np.asarray(corpus[c_start:c_start + chunk_size], dtype=np.float32)
            scores = _score_block(block, chunk)
            indices = np.broadcast_to(np.arange(c_start, c_start + len(chunk)), scores.shape)
            scores = np.concatenate([best_scores, scores], axis=1)
            indices = np.concatenate([best_indices, indices], axis=1)
            if scores.shape[1] > k:
                keep = np.argpartition(-scores, k - 1, axis=1)[:, :k]
                scores = np.take_along_axis(scores, keep, axis=1)
                indices = np.take_along_axis(indices, keep, axis=1)
            best_scores, best_indices = scores, indices
        order = np.lexsort((best_indices, -best_scores), axis=1)
        all_scores[q_start:q_start + len(block)] = np.take_along_axis(best_scores, order, 1)
        all_indices[q_start:q_start + len(block)] = np.take_along_axis(best_indices, order, 1)
    return all_scores, all_indices


def select_hard_negatives(ranking: Ranking, judged: Mapping[str, int] | set[str], *,
                          window: Sequence[int], limit: int,
                          positive_score: float | None = None,
                          margin: float = 0.0) -> tuple[list[str], dict[str, int]]:
    """Negatives for one (query, positive) from a ranking, best first.

    Args:
        ranking: ``(doc_id, score)`` best first.
        judged: every judged document of the query; never a negative.
        window: ``[first, last)`` 0-based ranks to draw from (e.g. ``[10, 100]``: skip the
            top 10, where unjudged relevant articles crowd, and the easy tail).
        limit: candidates kept.
        positive_score: the positive's score under the same model; with it, a candidate
            scoring at least ``positive_score - margin`` is dropped as a likely false
            negative (NV-Retriever's positive-aware mining, Moreira et al., 2024,
            arXiv:2407.15831).
        margin: see ``positive_score``.

    Returns:
        ``(negatives, counts)`` where counts has ``judged`` and ``above_positive`` skips.
    """
    first, last = int(window[0]), int(window[1])
    negatives: list[str] = []
    counts = {"judged": 0, "above_positive": 0}
    for doc_id, score in ranking[first:last]:
        if doc_id in judged:
            counts["judged"] += 1
            continue
        if positive_score is not None and score >= positive_score - margin:
            counts["above_positive"] += 1
            continue
        negatives.append(doc_id)
        if len(negatives) >= limit:
            break
    return negatives, counts


def rankings_from_top_k(scores: np.ndarray, indices: np.ndarray,
                        doc_ids: Sequence[str]) -> list[Ranking]:
    return [[(doc_ids[int(i)], float(s)) for s, i in zip(row_s, row_i)]
            for row_s, row_i in zip(scores, indices)]
