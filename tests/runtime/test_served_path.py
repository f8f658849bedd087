"""The laptop's path: an index built with a bundle, hybrid search, reranking, incremental
changes and refusals (issue 6)."""

import json

import numpy as np
import pytest

from lexedge.cli import main
from lexedge.runtime.bundle import Bundle
from lexedge.runtime.datasets import Document, iter_corpus
from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.index import Index
from lexedge.runtime.searcher import Searcher


@pytest.fixture
def served_index(tiny_dataset, tiny_bundle, tmp_path):
    return Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx",
                       bundle=Bundle.load(tiny_bundle), progress=False)


def ranking(searcher, query, **options):
    return [(h.id, round(h.score, 5)) for h in searcher.search(query, **options).hits]


def test_index_records_its_bundle(served_index, tiny_bundle):
    assert served_index.manifest["bundle"]["sha256"] == Bundle.load(tiny_bundle).sha256
    assert len(served_index.dense) == 6


def test_dense_scores_are_the_embedders_cosines(served_index):
    searcher = Searcher(served_index)
    result = searcher.search("損害賠償", alpha=1.0, rerank=0, budget=6, top=6)
    embedder = served_index.bundle.embedder()
    query = embedder.encode(["損害賠償"], kind="query")[0]
    for hit in result.hits:
        passage = embedder.encode([served_index.document(hit.id).indexed_text])[0]
        assert hit.scores["dense"] == pytest.approx(float(query @ passage), abs=1e-4)


def test_pipeline_reorders_the_head_by_reranker_score(served_index):
    searcher = Searcher(served_index)
    result = searcher.search("他人の権利を侵害した損害", budget=6, rerank=4, top=6)
    head = result.hits[:4]
    scores = [h.scores["rerank"] for h in head]
    assert scores == sorted(scores, reverse=True)
    assert result.settings["rerank"] == 4 and "rerank" in result.timings_ms
    expected = served_index.bundle.reranker().score(
        "他人の権利を侵害した損害", [served_index.document(h.id).indexed_text for h in head])
    np.testing.assert_allclose(sorted(expected, reverse=True), scores, rtol=1e-5)


def test_rerank_weight_mixes_reranker_and_first_stage_scores(served_index):
    from lexedge.runtime.fusion import interpolate

    searcher = Searcher(served_index)
    assert searcher.rerank_weight == 1.0  # the tiny bundle records none
    query = "他人の権利を侵害した損害"
    first = searcher.search(query, budget=6, rerank=0, top=6).hits
    reranker_scores = served_index.bundle.reranker().score(
        query, [served_index.document(h.id).indexed_text for h in first[:4]])
    for weight in (0.0, 0.4, 1.0):
        result = searcher.search(query, budget=6, rerank=4, top=6, rerank_weight=weight)
        expected = interpolate([(h.id, h.score) for h in first[:4]], reranker_scores, weight)
        assert [h.id for h in result.hits[:4]] == [d for d, _, _ in expected]
        assert [h.score for h in result.hits[:4]] == pytest.approx([f for _, f, _ in expected])
        assert [h.id for h in result.hits[4:]] == [h.id for h in first[4:]]
        assert result.settings["rerank_weight"] == weight
    unmixed = searcher.search(query, budget=6, rerank=4, top=6, rerank_weight=0.0)
    assert [h.id for h in unmixed.hits] == [h.id for h in first]
    with pytest.raises(LexedgeError, match="rerank weight 2: must be within"):
        searcher.search(query, rerank=4, rerank_weight=2.0)


def test_the_bundles_rerank_weight_is_the_default(served_index, tiny_dataset, tmp_path):
    from support.tiny_bundle import build_tiny_bundle

    characters = ((tiny_dataset / "corpus.jsonl").read_text(encoding="utf-8")
                  + (tiny_dataset / "queries.jsonl").read_text(encoding="utf-8"))
    weighted = Bundle.load(build_tiny_bundle(tmp_path / "weighted", characters,
                                             rerank_weight=0.3))
    searcher = Searcher(Index.load(served_index.path, bundle=weighted))
    assert searcher.rerank_weight == 0.3
    query = "他人の権利を侵害した損害"
    assert ranking(searcher, query, rerank=4) == ranking(searcher, query, rerank=4,
                                                         rerank_weight=0.3)
    assert searcher.search(query, rerank=4).settings["rerank_weight"] == 0.3
    assert searcher.search(query, rerank=0).settings["rerank_weight"] is None


def test_incremental_add_and_remove_equal_a_rebuild(tiny_dataset, tiny_bundle, tmp_path):
    bundle = Bundle.load(tiny_bundle)
    documents = list(iter_corpus(tiny_dataset / "corpus.jsonl"))
    partial = tmp_path / "partial.jsonl"
    partial.write_text("".join(json.dumps({"id": d.id, "title": d.title, "text": d.text},
                                          ensure_ascii=False) + "\n" for d in documents[:4]),
                       encoding="utf-8")
    incremental = Index.build(partial, tmp_path / "inc", bundle=bundle, progress=False)
    incremental = incremental.add(documents[4:] + [Document("extra", "一時的な条文", "仮")])
    incremental = incremental.remove(["extra"])
    rebuilt = Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "full", bundle=bundle,
                          progress=False)
    for query in ("損害賠償", "労働時間", "著作権", "個人データの第三者提供"):
        for alpha in (0.0, 0.5, 1.0):
            options = dict(alpha=alpha, rerank=0, budget=6, top=6)
            assert ranking(Searcher(incremental), query, **options) == \
                ranking(Searcher(rebuilt), query, **options), (query, alpha)


def test_adding_an_existing_id_replaces_it(served_index):
    updated = served_index.add([Document("d6", "著作者は複製権を持つ。改正後の文。", "著作権法 第二十一条")])
    assert "改正後" in updated.document("d6").text
    assert len(updated) == 6


def test_killed_build_leaves_the_old_index_usable(tiny_dataset, tiny_bundle, served_index,
                                                   monkeypatch):
    before = ranking(Searcher(served_index), "労働時間", rerank=0)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # what a Ctrl-C or kill late in the build looks like

    monkeypatch.setattr("lexedge.runtime.index.build_dense", crash)
    with pytest.raises(KeyboardInterrupt):
        Index.build(tiny_dataset / "corpus.jsonl", served_index.path,
                    bundle=Bundle.load(tiny_bundle), progress=False)
    monkeypatch.undo()
    leftovers = [p.name for p in served_index.path.parent.iterdir() if ".tmp-" in p.name]
    assert leftovers == []
    assert ranking(Searcher(Index.load(served_index.path)), "労働時間", rerank=0) == before


def test_a_different_bundle_is_refused(served_index, tiny_dataset, tmp_path):
    from support.tiny_bundle import build_tiny_bundle

    other = build_tiny_bundle(tmp_path / "other", (tiny_dataset / "corpus.jsonl").read_text(),
                              seed=7)
    with pytest.raises(LexedgeError, match="built with bundle .* rebuild the index"):
        Index.load(served_index.path, bundle=other)


def test_a_bundle_with_the_same_embedder_but_another_reranker_serves(served_index, tiny_dataset,
                                                                     tmp_path):
    from support.tiny_bundle import build_tiny_bundle

    characters = ((tiny_dataset / "corpus.jsonl").read_text(encoding="utf-8")
                  + (tiny_dataset / "queries.jsonl").read_text(encoding="utf-8"))
    without_reranker = Bundle.load(build_tiny_bundle(tmp_path / "plain", characters,
                                                     reranker=False))
    assert without_reranker.sha256 != served_index.bundle.sha256
    index = Index.load(served_index.path, bundle=without_reranker)
    assert ranking(Searcher(index), "損害賠償", rerank=0) == ranking(Searcher(served_index),
                                                                   "損害賠償", rerank=0)


@pytest.mark.parametrize("query", ["", "   ", "損害" * 1000, "What is the notice period?",
                                   "مرحبا بالعالم", "🙂"])
def test_odd_queries_return_sensibly(served_index, query):
    # "損害" * 1000 is MAX_QUERY_CHARS long: the longest accepted (test_input_hygiene.py)
    result = Searcher(served_index).search(query, budget=20, rerank=5)
    assert isinstance(result.hits, list) and len(result.hits) <= 6
    if not query.strip():
        assert result.hits == []


def test_filters_restrict_results(served_index):
    result = Searcher(served_index).search("法律", filters={"title": "民法*"}, rerank=0)
    assert result.hits and all(h.title.startswith("民法") for h in result.hits)


def test_eval_served_methods(tiny_dataset, tiny_bundle, tmp_path):
    for method in ("dense", "hybrid", "pipeline"):
        out = tmp_path / f"{method}.json"
        assert main(["eval", str(tiny_dataset), "--method", method, "--bundle",
                     str(tiny_bundle), "--budget", "6", "--rerank", "3",
                     "--metrics-out", str(out)]) == 0
        metrics = json.loads(out.read_text())
        assert metrics["queries"] == 2 and 0.0 <= metrics["recall@5"] <= 1.0
        assert metrics["rerank"] == (3 if method == "pipeline" else 0)


def test_eval_pipeline_without_a_reranker_scores_what_search_serves(served_index,
                                                                    tiny_dataset, tmp_path):
    """A bundle without a reranker (the built-in) serves the fused first stage at the budget;
    ``--method pipeline`` measures exactly that instead of refusing (issue 19 states its
    quality bar as ``lexedge eval --method pipeline``)."""
    from lexedge.runtime.datasets import BeirDataset
    from lexedge.runtime.evaluation import EvalConfig, run_evaluation, served_order

    from support.tiny_bundle import build_tiny_bundle

    characters = ((tiny_dataset / "corpus.jsonl").read_text(encoding="utf-8")
                  + (tiny_dataset / "queries.jsonl").read_text(encoding="utf-8"))
    without_reranker = Bundle.load(build_tiny_bundle(tmp_path / "plain", characters,
                                                     reranker=False))
    config = EvalConfig(data_dir=str(tiny_dataset), method="pipeline",
                        index=str(served_index.path), bundle=str(without_reranker.path),
                        budget=5, rerank=3)
    metrics, run = run_evaluation(config)
    assert metrics["rerank"] == 0 and metrics["budget"] == 5
    searcher = Searcher(Index.load(served_index.path, bundle=without_reranker))
    queries = BeirDataset(tiny_dataset).queries()
    for query_id, scored in run.items():
        hits = searcher.search(queries[query_id], budget=5, rerank=3, top=5).hits
        assert scored == served_order(hits)


def test_rebuild_re_embeds_only_changed_documents(tiny_dataset, tiny_bundle, served_index,
                                                  tmp_path):
    assert served_index.manifest["vectors"] == {"embedded": 6, "reused": 0, "resumed": 0}
    corpus = (tiny_dataset / "corpus.jsonl").read_text(encoding="utf-8")
    changed = tmp_path / "changed.jsonl"
    changed.write_text(corpus.replace("死刑又は無期", "無期"), encoding="utf-8")
    rebuilt = Index.build(changed, served_index.path, bundle=Bundle.load(tiny_bundle),
                          progress=False)
    assert rebuilt.manifest["vectors"] == {"embedded": 1, "reused": 5, "resumed": 0}
    fresh = Index.build(changed, tmp_path / "fresh", bundle=Bundle.load(tiny_bundle),
                        progress=False)
    for query in ("人を殺した者", "著作権"):
        assert ranking(Searcher(rebuilt), query, rerank=0) == \
            ranking(Searcher(fresh), query, rerank=0)


def test_eval_measures_the_served_order_after_re_ranking(tiny_dataset, served_index):
    """The metrics rank a run by score, and a re-scored head (min-max mixed scores in [0, 1])
    is not on the scale of the first-stage tail: the run eval scores must be the order the
    searcher serves, or tail documents climb over the head (issue 19, found measuring the
    laptop reranker)."""
    from lexedge.runtime.datasets import BeirDataset
    from lexedge.runtime.evaluation import EvalConfig, run_evaluation, served_order

    config = EvalConfig(data_dir=str(tiny_dataset), method="pipeline",
                        index=str(served_index.path), budget=8, rerank=4, rerank_weight=0.4)
    _, run = run_evaluation(config)
    queries = BeirDataset(tiny_dataset).queries()
    searcher = Searcher(served_index)
    for query_id, scored in run.items():
        hits = searcher.search(queries[query_id], budget=8, rerank=4, rerank_weight=0.4,
                               top=8).hits
        assert scored == served_order(hits)  # the served order, scored by rank


def test_a_run_keeps_the_served_order_when_head_and_tail_scales_differ():
    from types import SimpleNamespace

    from lexedge.runtime.evaluation import served_order

    # a re-ranked head mixed into [0, 1], then the first-stage tail on its own scale
    hits = [SimpleNamespace(id=doc, score=score) for doc, score in
            [("a", 1.0), ("b", 0.3), ("c", 0.0), ("d", 0.62), ("e", 0.55)]]
    run = served_order(hits)
    assert [doc for doc, _ in sorted(run, key=lambda item: -item[1])] == list("abcde")
