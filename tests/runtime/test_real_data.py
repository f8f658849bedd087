"""BM25 quality on real data from ../shared/data, where it is present (issue 2's targets)."""

from lexedge.runtime.evaluation import EvalConfig, run_evaluation


def test_bm25_ja_appi_dev_with_the_fugashi_analyzer(shared_data):
    metrics, _ = run_evaluation(EvalConfig(str(shared_data / "ja_appi"), split="dev"))
    assert metrics["analyzer"] == {"name": "ja", "dictionary": "ipadic"}
    assert metrics["queries"] == 80 and metrics["corpus_size"] == 12116
    # Measured 0.983 / 0.628 at k1=1.2, b=0.75; the thresholds leave room, not regressions.
    assert metrics["recall@100"] >= 0.95
    assert metrics["mrr@10"] >= 0.55
