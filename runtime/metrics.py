"""Retrieval metrics, with the definitions used throughout lexedge.

A *run* maps each query id to its ranked list of ``(doc_id, score)``, best first. *Qrels* map
each query id to ``{doc_id: grade}``; a grade > 0 means relevant. Only queries that have at
least one relevant document are evaluated (a query with no judgments says nothing about a
system); a judged query missing from the run scores 0. Every metric is a macro average over
those queries.

* ``recall@k`` = |relevant ∩ top-k| / |relevant| (STARD's definition, also trec_eval's
  ``recall_k``).
* ``mrr@k`` = 1 / rank of the first relevant document within the top k, 0 if none.
* ``ndcg@k`` = DCG@k / IDCG@k with linear graded gains: DCG@k = Σ_{i≤k} grade_i / log2(i + 1),
  IDCG@k the same over the ideal ordering of the judged grades (trec_eval's ``ndcg_cut``).

Ties in score keep the run's order (the ranking is the list as given).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from .datasets import Qrels

Run = Mapping[str, Sequence[tuple[str, float]]]

RECALL_CUTOFFS = (1, 3, 5, 10, 20, 50, 100, 200)


def recall_at_k(ranking: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    positives = {doc for doc, grade in relevant.items() if grade > 0}
    if not positives:
        return 0.0
    return len(positives.intersection(ranking[:k])) / len(positives)


def mrr_at_k(ranking: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    for rank, doc in enumerate(ranking[:k], start=1):
        if relevant.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranking: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    dcg = sum(max(relevant.get(doc, 0), 0) / math.log2(rank + 1)
              for rank, doc in enumerate(ranking[:k], start=1))
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    idcg = sum(grade / math.log2(rank + 1) for rank, grade in enumerate(ideal, start=1))
    return dcg / idcg if idcg > 0 else 0.0


def evaluate(run: Run, qrels: Qrels, recall_cutoffs: Iterable[int] = RECALL_CUTOFFS,
             mrr_cutoff: int = 10, ndcg_cutoff: int = 10) -> dict[str, float]:
    """Macro-averaged ``recall@k`` for every cutoff, ``mrr@10`` and ``ndcg@10``, plus
    ``queries`` (the number evaluated)."""
    judged = [q for q, rels in qrels.items() if any(g > 0 for g in rels.values())]
    cutoffs = list(recall_cutoffs)
    totals = {f"recall@{k}": 0.0 for k in cutoffs}
    totals[f"mrr@{mrr_cutoff}"] = 0.0
    totals[f"ndcg@{ndcg_cutoff}"] = 0.0
    for query_id in judged:
        ranking = [doc for doc, _ in run.get(query_id, ())]
        relevant = qrels[query_id]
        for k in cutoffs:
            totals[f"recall@{k}"] += recall_at_k(ranking, relevant, k)
        totals[f"mrr@{mrr_cutoff}"] += mrr_at_k(ranking, relevant, mrr_cutoff)
        totals[f"ndcg@{ndcg_cutoff}"] += ndcg_at_k(ranking, relevant, ndcg_cutoff)
    count = len(judged)
    metrics = {name: (value / count if count else 0.0) for name, value in totals.items()}
    metrics["queries"] = count
    return metrics


def write_trec_run(path, run: Run, tag: str = "lexedge") -> None:
    """Write a run in TREC format: ``qid Q0 docid rank score tag``."""
    with open(path, "w", encoding="utf-8") as handle:
        for query_id, ranking in run.items():
            for rank, (doc_id, score) in enumerate(ranking, start=1):
                handle.write(f"{query_id} Q0 {doc_id} {rank} {score:.6f} {tag}\n")
