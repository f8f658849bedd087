"""Our metrics agree with trec_eval (through pytrec_eval) on random runs (issue 2, point 5)."""

import random

import pytest

from lexedge.runtime.metrics import evaluate

pytrec_eval = pytest.importorskip("pytrec_eval")


def random_case(seed: int):
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(60)]
    qrels, run = {}, {}
    for q in range(40):
        query_id = f"q{q}"
        relevant = rng.sample(docs, rng.randint(1, 6))
        qrels[query_id] = {d: rng.choice([1, 1, 2, 3]) for d in relevant}
        if rng.random() < 0.1:
            continue  # a judged query the system returned nothing for
        ranked = rng.sample(docs, rng.randint(5, 60))
        scores = sorted(rng.sample(range(10_000), len(ranked)), reverse=True)
        run[query_id] = [(d, float(s)) for d, s in zip(ranked, scores)]
    return qrels, run


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_trec_eval(seed):
    qrels, run = random_case(seed)
    ours = evaluate(run, qrels)
    measures = {"recall.1,3,5,10,20,50,100,200", "recip_rank", "ndcg_cut.10"}
    # trec_eval's recip_rank has no cutoff: give it the top 10 for MRR@10.
    top10 = {q: {d: s for d, s in r[:10]} for q, r in run.items()}
    full = {q: {d: s for d, s in r} for q, r in run.items()}
    for query_id in qrels:  # trec_eval skips queries absent from the run; we score them 0
        full.setdefault(query_id, {})
        top10.setdefault(query_id, {})
    reference = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(full)
    reference_rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    n = len(qrels)
    for k in (1, 3, 5, 10, 20, 50, 100, 200):
        expected = sum(reference.get(q, {}).get(f"recall_{k}", 0.0) for q in qrels) / n
        assert ours[f"recall@{k}"] == pytest.approx(expected, abs=1e-9), k
    expected_ndcg = sum(reference.get(q, {}).get("ndcg_cut_10", 0.0) for q in qrels) / n
    expected_mrr = sum(reference_rr.get(q, {}).get("recip_rank", 0.0) for q in qrels) / n
    assert ours["ndcg@10"] == pytest.approx(expected_ndcg, abs=1e-9)
    assert ours["mrr@10"] == pytest.approx(expected_mrr, abs=1e-9)
    assert ours["queries"] == n


def test_recall_is_fraction_of_relevant_found():
    qrels = {"q": {"a": 1, "b": 1, "c": 0}}
    run = {"q": [("x", 3.0), ("a", 2.0), ("c", 1.0)]}
    metrics = evaluate(run, qrels, recall_cutoffs=(1, 2, 3))
    assert metrics["recall@1"] == 0.0
    assert metrics["recall@2"] == 0.5  # c has grade 0: not relevant
    assert metrics["mrr@10"] == 0.5
