"""The late-interaction reranker (issue 19, item 3): the graph cut from an embedder, the head
written into it, and ``lexedge late-interaction`` end to end on a tiny bundle."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

from lexedge.export.late_interaction import token_graph  # noqa: E402
from lexedge.runtime.bundle import Bundle  # noqa: E402
from lexedge.runtime.onnx_models import OnnxLateInteraction, SharedTokenizer  # noqa: E402
from lexedge.trainer.late_interaction import LateInteractionHead  # noqa: E402
from support.tiny_bundle import build_tiny_bundle  # noqa: E402

TEXTS = ["個人データを第三者に提供", "損害を賠償する責任", "労働時間の上限"]


@pytest.fixture
def layer_norm_bundle(tmp_path, tiny_dataset):
    characters = (tiny_dataset / "corpus.jsonl").read_text(encoding="utf-8") + \
        (tiny_dataset / "queries.jsonl").read_text(encoding="utf-8")
    return build_tiny_bundle(tmp_path / "source", characters, reranker=False, layer_norm=True)


def _model(bundle, graph, tmp_path, name):
    import onnx

    path = tmp_path / f"{name}.onnx"
    onnx.save(graph, str(path))
    entry = dict(Bundle.load(bundle).manifest["embedder"], output="token_states",
                 weights_output="token_weights")
    return OnnxLateInteraction(path, SharedTokenizer(bundle / "embedder.tokenizer.json"), entry)


def _with_untrained_late_interaction(bundle, **fields) -> None:
    """Give ``bundle`` its embedder's token states as a late-interaction reranker (the head
    untrained), the manifest's ``reranker`` section holding ``fields`` as well."""
    from lexedge.export.late_interaction import RERANKER_FILE
    from lexedge.runtime.bundle import write_manifest
    from lexedge.runtime.storage import sha256_file

    import onnx

    onnx.save(token_graph(bundle / "embedder.onnx"), str(bundle / RERANKER_FILE))
    manifest = Bundle.load(bundle).manifest
    manifest["reranker"] = dict(manifest["embedder"], kind="late_interaction",
                                file=RERANKER_FILE, output="token_states",
                                weights_output="token_weights", **fields)
    manifest["files"][RERANKER_FILE] = sha256_file(bundle / RERANKER_FILE)
    write_manifest(bundle, {k: v for k, v in manifest.items() if k != "manifest_sha256"})


def _reference_states(bundle, text):
    """What the tiny embedder's layer normalisation gives for ``text``, made unit length."""
    import onnx
    from onnx import numpy_helper

    weights = {i.name: numpy_helper.to_array(i)
               for i in onnx.load(str(bundle / "embedder.onnx")).graph.initializer}
    ids = SharedTokenizer(bundle / "embedder.tokenizer.json").encode_batch([text], 64)[0].ids
    vectors = weights["table"][ids]
    centred = vectors - vectors.mean(-1, keepdims=True)
    normed = centred / np.sqrt((centred ** 2).mean(-1, keepdims=True) + 1e-5)
    hidden = normed * weights["ln_scale"] + weights["ln_bias"]
    return hidden / np.linalg.norm(hidden, axis=-1, keepdims=True)


def test_untrained_graph_gives_the_last_layers_unit_states_and_maxsim(
        layer_norm_bundle, tmp_path):
    model = _model(layer_norm_bundle, token_graph(layer_norm_bundle / "embedder.onnx"),
                   tmp_path, "untrained")
    states = model.token_states(TEXTS)
    for text, (array, weights) in zip(TEXTS, states):
        np.testing.assert_allclose(array, _reference_states(layer_norm_bundle, text),
                                   atol=1e-5)
        np.testing.assert_allclose(weights, np.ones(len(array)))
    query = _reference_states(layer_norm_bundle, TEXTS[0])
    expected = [float((query @ _reference_states(layer_norm_bundle, t).T).max(1).mean())
                for t in TEXTS]
    np.testing.assert_allclose(model.score(TEXTS[0], TEXTS), expected, atol=1e-5)


def test_the_graph_with_a_head_scores_as_the_torch_head(layer_norm_bundle, tmp_path):
    untrained = _model(layer_norm_bundle, token_graph(layer_norm_bundle / "embedder.onnx"),
                       tmp_path, "untrained")
    torch.manual_seed(3)
    head = LateInteractionHead(16)
    with torch.no_grad():  # a head far from its start: a wrong wiring cannot hide
        head.projection.weight.add_(0.5 * torch.randn(16, 16))
        head.gate.weight.normal_()
    trained = _model(layer_norm_bundle, token_graph(layer_norm_bundle / "embedder.onnx",
                                                    head.tensors()), tmp_path, "trained")
    (query, _), = untrained.token_states([TEXTS[1]], "query")
    with torch.no_grad():
        expected = head.score(torch.from_numpy(query), [
            torch.from_numpy(a) for a, _ in untrained.token_states(TEXTS)]).numpy()
    np.testing.assert_allclose(trained.score(TEXTS[1], TEXTS), expected, atol=1e-5)
    (_, weights), = trained.token_states([TEXTS[1]], "query")
    assert np.ptp(weights) > 1e-3  # the gate is in the graph, not all ones


def test_lexedge_late_interaction_writes_a_bundle_whose_search_reranks(
        layer_norm_bundle, tiny_dataset, tmp_path):
    from lexedge.cli import main
    from lexedge.runtime.searcher import Searcher

    index = tmp_path / "index"
    assert main(["index", "build", "--docs", str(tiny_dataset / "corpus.jsonl"), "--bundle",
                 str(layer_norm_bundle), "--out", str(index)]) == 0
    out = tmp_path / "with-reranker"
    assert main(["late-interaction", "--bundle", str(layer_norm_bundle), "--data",
                 str(tiny_dataset), "--index", str(index), "--out", str(out), "--epochs",
                 "2", "--candidates", "4", "--passage-caps", "3", "6"]) == 0
    bundle, source = Bundle.load(out), Bundle.load(layer_norm_bundle)
    entry = bundle.manifest["reranker"]
    assert entry["kind"] == "late_interaction" and isinstance(bundle.reranker(),
                                                              OnnxLateInteraction)
    # the embedder is untouched: indexes built with the source bundle serve the new one
    assert bundle.embedder_id == source.embedder_id
    assert (out / "embedder.onnx").read_bytes() == \
        (layer_norm_bundle / "embedder.onnx").read_bytes()
    analyzer = json.loads((index / "manifest.json").read_text())["analyzer"]["name"]
    assert set(entry["rerank_weight_by_analyzer"]) == {analyzer}
    assert entry["parity"]["gates"][0]["passed"]
    # the passage cap was chosen on dev among the caps asked for and the trained one
    chosen = entry["training"]["selection"][tiny_dataset.name]
    assert set(chosen["by_passage_max_length"]) == {"3", "6", str(entry["passage_max_length"])}
    assert entry["passage_max_length_by_analyzer"] == {analyzer: chosen["passage_max_length"]}
    result = Searcher(index, bundle=out).search("個人データを第三者に提供")
    assert result.settings["rerank"] == len(result.hits) > 0
    assert all("rerank" in hit.scores for hit in result.hits)


def test_the_search_reads_passages_to_the_cap_chosen_for_its_language(
        layer_norm_bundle, tiny_dataset, tmp_path):
    from lexedge.runtime.index import Index
    from lexedge.runtime.searcher import Searcher

    _with_untrained_late_interaction(layer_norm_bundle, passage_max_length=64,
                                     rerank_weight=1.0, passage_max_length_by_analyzer={"ja": 3})
    query = "個人データを第三者に提供"
    for analyzer, cap in (("ja", 3), ("word", 64)):
        index = Index.build(tiny_dataset / "corpus.jsonl", tmp_path / analyzer,
                            analyzer=analyzer, bundle=Bundle.load(layer_norm_bundle),
                            progress=False)
        searcher = Searcher(index)
        hits = searcher.search(query, rerank=5).hits[:5]
        texts = [searcher.index.document(hit.id).indexed_text for hit in hits]
        expected = searcher.reranker.score(query, texts, passage_max_length=cap)
        np.testing.assert_allclose([hit.scores["rerank"] for hit in hits], expected, atol=1e-6)
        if analyzer == "ja":  # the cap shortens what is read, so the scores change
            assert all(len(states) <= 3 for states, _ in
                       searcher.reranker.token_states(texts, passage_max_length=3))
            assert not np.allclose(expected, searcher.reranker.score(query, texts))


def test_a_search_can_name_the_tokens_each_passage_is_read_to(layer_norm_bundle, tiny_bundle,
                                                               tiny_dataset, tmp_path, capsys):
    """``rerank_tokens`` (``--rerank-tokens``) overrides the bundle's length for one search,
    is reported with it, and is refused in one line beyond the model or with a
    cross-encoder."""
    from lexedge.cli import main
    from lexedge.runtime.errors import LexedgeError
    from lexedge.runtime.index import Index
    from lexedge.runtime.searcher import Searcher

    _with_untrained_late_interaction(layer_norm_bundle, passage_max_length=64, rerank_weight=1.0)
    index = Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "li", analyzer="word",
                        bundle=Bundle.load(layer_norm_bundle), progress=False)
    searcher = Searcher(index)
    query = "個人データを第三者に提供"
    default = searcher.search(query, rerank=5)
    short = searcher.search(query, rerank=5, rerank_tokens=3)
    assert (default.settings["rerank_tokens"], short.settings["rerank_tokens"]) == (64, 3)
    texts = [searcher.index.document(hit.id).indexed_text for hit in short.hits[:5]]
    np.testing.assert_allclose([hit.scores["rerank"] for hit in short.hits[:5]],
                               searcher.reranker.score(query, texts, passage_max_length=3),
                               atol=1e-6)
    assert searcher.search(query, rerank=0, rerank_tokens=3).settings["rerank_tokens"] is None
    limit = searcher.reranker.max_length
    searcher.first_stage = lambda *args: pytest.fail("refused only after the first stage ran")
    with pytest.raises(LexedgeError, match=f"rerank tokens {limit + 1}: must be at most {limit}"):
        searcher.search(query, rerank=5, rerank_tokens=limit + 1)
    assert main(["search", query, "--index", str(index.path), "--rerank", "5",
                 "--rerank-tokens", "3"]) == 0
    assert "3 tokens each" in capsys.readouterr().out
    assert main(["search", query, "--index", str(index.path), "--rerank-tokens",
                 str(limit + 1)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    cross = Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "cross", analyzer="word",
                        bundle=Bundle.load(tiny_bundle), progress=False)
    with pytest.raises(LexedgeError, match="rerank tokens 3: .*cross-encoder"):
        Searcher(cross).search(query, rerank=5, rerank_tokens=3)


def test_the_search_takes_the_reranker_weight_of_its_indexs_language(tiny_bundle, tmp_path):
    from lexedge.runtime.bundle import write_manifest
    from lexedge.runtime.index import Index
    from lexedge.runtime.searcher import Searcher

    manifest = Bundle.load(tiny_bundle).manifest
    manifest["reranker"].update(rerank_weight=0.9, rerank_weight_by_analyzer={"ja": 0.3})
    write_manifest(tiny_bundle, {k: v for k, v in manifest.items() if k != "manifest_sha256"})
    documents = [{"id": "a", "text": "個人データ"}, {"id": "b", "text": "損害賠償"}]
    for analyzer, expected in (("ja", 0.3), ("word", 0.9)):
        index = Index.build(documents, tmp_path / analyzer, analyzer=analyzer,
                            bundle=Bundle.load(tiny_bundle),
                            progress=False)
        assert Searcher(index).rerank_weight == expected


def test_maxsim_scores_every_passage_in_one_product_on_one_blas_thread(monkeypatch):
    from lexedge.runtime import blas, onnx_models

    random = np.random.default_rng(0)
    unit = lambda rows: rows / np.linalg.norm(rows, axis=-1, keepdims=True)  # noqa: E731
    query, weights = unit(random.normal(size=(5, 8))), random.uniform(0.1, 2, size=5)
    passages = [unit(random.normal(size=(n, 8))) for n in (3, 1, 7)] + [np.zeros((0, 8))]
    entered = []
    real = blas.one_blas_thread

    def recording():
        entered.append(True)
        return real()

    monkeypatch.setattr(blas, "one_blas_thread", recording)
    scores = onnx_models.maxsim(query, weights, passages)
    expected = [float(weights @ (query @ p.T).max(1) / weights.sum()) for p in passages[:3]]
    np.testing.assert_allclose(scores, expected + [0.0], rtol=1e-5)
    # OpenBLAS's spinning threads took the cores from onnxruntime (lexedge.runtime.blas)
    assert entered == [True]


def test_a_passage_length_beyond_the_models_is_refused_in_one_line(
        layer_norm_bundle, tiny_dataset, tmp_path, capsys):
    from lexedge.cli import main
    from lexedge.runtime.errors import LexedgeError
    from lexedge.runtime.index import Index
    from lexedge.runtime.searcher import Searcher

    model = _model(layer_norm_bundle, token_graph(layer_norm_bundle / "embedder.onnx"),
                   tmp_path, "untrained")
    limit = model.max_length
    # the built-in's graph has no positions past it: onnxruntime fails with a shape error
    with pytest.raises(LexedgeError, match=f"1-{limit} tokens"):
        model.score(TEXTS[0], TEXTS, passage_max_length=limit + 1)
    _with_untrained_late_interaction(layer_norm_bundle,
                                     passage_max_length_by_analyzer={"ja": limit + 1})
    index = Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "ja", analyzer="ja",
                        bundle=Bundle.load(layer_norm_bundle), progress=False)
    with pytest.raises(LexedgeError, match="passage_max_length_by_analyzer.ja .*within 1-"):
        Searcher(index)
    out = tmp_path / "with-reranker"
    assert main(["late-interaction", "--bundle", str(layer_norm_bundle), "--data",
                 str(tiny_dataset), "--index", str(index), "--out", str(out),
                 "--passage-max-length", str(limit + 1)]) == 2
    error = capsys.readouterr().err.strip()
    assert "--passage-max-length" in error and len(error.splitlines()) == 1
    assert not out.exists()


def test_a_narrow_head_writes_states_that_wide_and_passes_its_parity_gate(
        layer_norm_bundle, tiny_dataset, tmp_path, capsys):
    from lexedge.cli import main

    index = tmp_path / "index"
    assert main(["index", "build", "--docs", str(tiny_dataset / "corpus.jsonl"), "--bundle",
                 str(layer_norm_bundle), "--out", str(index)]) == 0
    common = ["late-interaction", "--bundle", str(layer_norm_bundle), "--data",
              str(tiny_dataset), "--index", str(index), "--epochs", "1", "--candidates", "4"]
    out = tmp_path / "narrow"
    assert main(common + ["--out", str(out), "--dimension", "6"]) == 0
    entry = Bundle.load(out).manifest["reranker"]
    assert entry["dimension"] == 6 and entry["training"]["head"]["dimension"] == 6
    assert entry["parity"]["gates"][0]["passed"]
    (states, _), = Bundle.load(out).reranker().token_states([TEXTS[0]])
    assert states.shape[1] == 6
    capsys.readouterr()
    for wrong in ("0", "17"):  # the tiny embedder is 16 wide
        assert main(common + ["--out", str(tmp_path / f"wrong{wrong}"), "--dimension",
                              wrong]) == 2
        error = capsys.readouterr().err.strip()
        assert error.count("\n") == 0 and "--dimension" in error and "1-16" in error
        assert not (tmp_path / f"wrong{wrong}").exists()
