"""Export specifications (issue #5): merged LoRA equals the adapter it came from, ONNX equals
torch, the bundle verifies, and a failed parity gate writes nothing."""

import json
import os

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("peft")

from lexedge.export.bundle import ExportConfig, export_bundle  # noqa: E402
from lexedge.export.merge import load_merged  # noqa: E402
from lexedge.export.onnx_export import export_onnx  # noqa: E402
from lexedge.export.parity import Gates  # noqa: E402
from lexedge.runtime.bundle import Bundle  # noqa: E402
from lexedge.runtime.errors import LexedgeError  # noqa: E402
from lexedge.runtime.storage import MARKER_FILE  # noqa: E402

QUERIES = ["worker hours", "tenant lease notice court", "copyright author", "consent"]
# Random tiny models embed everything alike, so their top-10 lists are noise: the gate
# tests set their own thresholds, the numbers themselves are checked on real models.
LENIENT = Gates(min_mean_cosine=0.0, min_top10_overlap=0.0, min_spearman=-1.0)


def quiet(*_args):
    pass


def mean_pooled(hidden, mask):
    mask = mask.unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1)


def torch_ids(tokenizer_file, texts, max_length=48):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return [tokenizer.encode(*text) if isinstance(text, tuple) else tokenizer.encode(text)
            for text in texts]


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory, adapter_dir, reranker_dir, calibration_corpus):
    out = tmp_path_factory.mktemp("bundles") / "int8"
    export_bundle(ExportConfig(out=out, embedder=str(adapter_dir), reranker=str(reranker_dir),
                               calibration=calibration_corpus, gates=LENIENT,
                               compare_per_tensor=True), log=quiet)
    return out


def test_merged_lora_export_equals_the_unmerged_adapter(adapter_dir, base_model_dir, tmp_path):
    import onnxruntime as ort
    import transformers
    from peft import PeftModel

    base = transformers.BertModel.from_pretrained(base_model_dir, add_pooling_layer=False)
    unmerged = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    plain = transformers.BertModel.from_pretrained(base_model_dir,
                                                   add_pooling_layer=False).eval()
    input_ids = torch.randint(5, 150, (3, 17), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(input_ids)
    mask[1, 9:] = 0
    mask[2, 4:] = 0
    with torch.no_grad():
        expected = mean_pooled(unmerged(input_ids=input_ids, attention_mask=mask)
                               .last_hidden_state, mask).numpy()
        without_adapter = mean_pooled(plain(input_ids=input_ids, attention_mask=mask)
                                      .last_hidden_state, mask).numpy()
    assert np.abs(expected - without_adapter).max() > 1e-2  # the adapter really does something

    stage = load_merged(adapter_dir, "embedder")
    assert stage.source["kind"] == "lora-adapter" and stage.source["base"]["kind"] == "model"
    export_onnx(stage, tmp_path / "embedder.onnx")
    session = ort.InferenceSession(str(tmp_path / "embedder.onnx"),
                                   providers=["CPUExecutionProvider"])
    found = session.run(["sentence_embedding"], {"input_ids": input_ids.numpy(),
                                                 "attention_mask": mask.numpy()})[0]
    np.testing.assert_allclose(found, expected, atol=1e-4)


def test_fp32_bundle_equals_torch_through_the_runtime(base_model_dir, calibration_corpus,
                                                      tmp_path):
    import transformers

    bundle = export_bundle(ExportConfig(out=tmp_path / "fp32", embedder=str(base_model_dir),
                                        precision="fp32", calibration=calibration_corpus),
                           log=quiet)
    embedder = bundle.embedder(threads=1)
    found = embedder.encode(QUERIES, kind="query", batch_size=3)

    model = transformers.BertModel.from_pretrained(base_model_dir,
                                                   add_pooling_layer=False).eval()
    expected = []
    for encoding in torch_ids(base_model_dir / "tokenizer.json",
                              ["query: " + q for q in QUERIES]):
        ids = torch.tensor([encoding.ids])
        mask = torch.ones_like(ids)
        with torch.no_grad():
            expected.append(mean_pooled(model(input_ids=ids, attention_mask=mask)
                                        .last_hidden_state, mask)[0].numpy())
    np.testing.assert_allclose(found, np.stack(expected), atol=1e-4)
    assert bundle.manifest["embedder"]["precision"] == "fp32"
    assert bundle.manifest["embedder"]["quantization"] is None
    assert bundle.manifest["reranker"] is None


def test_int8_bundle_loads_through_the_runtime_and_records_everything(int8_bundle):
    bundle = Bundle.load(int8_bundle)
    manifest = bundle.manifest
    assert set(manifest["files"]) == {"embedder.onnx", "embedder.tokenizer.json",
                                      "reranker.onnx", "reranker.tokenizer.json", "README.md"}
    assert sorted(p.name for p in int8_bundle.iterdir()) == sorted(
        [*manifest["files"], "manifest.json", MARKER_FILE])
    embedder = manifest["embedder"]
    assert embedder["inputs"] == ["input_ids", "attention_mask"]
    assert embedder["output"] == "sentence_embedding" and embedder["dimension"] == 32
    assert embedder["precision"] == "int8" and embedder["quantization"]["per_channel"] is True
    assert embedder["source"]["base"]["sha256"]["model.safetensors"]
    for key in ("cosine_mean", "cosine_min", "top10_overlap"):
        assert key in embedder["parity"]["quantization"]
        assert key in embedder["parity"]["per_tensor_int8"]
    assert embedder["parity"]["export_check"]["max_abs_diff"] < 1e-4
    assert manifest["reranker"]["output"] == "logits"
    assert "spearman" in manifest["reranker"]["parity"]["quantization"]
    assert manifest["gates"]["status"] == "passed"

    vectors = bundle.embedder().encode(QUERIES, kind="query")
    assert vectors.shape == (len(QUERIES), 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert bundle.reranker().score(QUERIES[0], QUERIES).shape == (len(QUERIES),)


def test_residual_layer_norms_stay_apart_in_the_file_and_in_the_cpu_session(int8_bundle,
                                                                            tmp_path,
                                                                            monkeypatch):
    """onnxruntime's fused SkipLayerNormalization CPU kernel was 6x slower than the Add +
    LayerNormalization it replaces (``bench/cpu_encoding.py``): the export leaves them
    apart, and the runtime keeps onnxruntime from fusing them again when it loads a model."""
    import onnx

    from lexedge.runtime import onnx_models

    def ops(path):
        return {node.op_type for node in onnx.load(str(path)).graph.node}

    for model in ("embedder", "reranker"):
        exported = ops(int8_bundle / f"{model}.onnx")
        assert "SkipLayerNormalization" not in exported and "LayerNormalization" in exported
    manifest = Bundle.load(int8_bundle).manifest
    assert manifest["embedder"]["graph"]["fused"]["LayerNormalization"] > 0

    options = onnx_models.session_options

    def keeping_the_optimised_graph(threads=None):
        chosen = options(threads)
        chosen.optimized_model_filepath = str(tmp_path / "as_loaded.onnx")
        return chosen

    monkeypatch.setattr(onnx_models, "session_options", keeping_the_optimised_graph)
    bundle = Bundle.load(int8_bundle)
    bundle.embedder()
    loaded = ops(tmp_path / "as_loaded.onnx")
    assert "SkipLayerNormalization" not in loaded and "LayerNormalization" in loaded


@pytest.fixture
def finished_stage(tmp_path, adapter_dir, base_model_dir):
    """A stage as lexedge train leaves it: an adapter with its manifest over a base whose
    settings record licences."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(base_model_dir, run / "base")
    settings = json.loads((run / "base" / "lexedge_model.json").read_text(encoding="utf-8"))
    (run / "base" / "lexedge_model.json").write_text(json.dumps(
        {**settings, "licences": {"example/tiny-bert": "MIT"}}), encoding="utf-8")
    shutil.copytree(adapter_dir, run / "stage1")
    config = json.loads((run / "stage1" / "adapter_config.json").read_text(encoding="utf-8"))
    (run / "stage1" / "adapter_config.json").write_text(json.dumps(
        {**config, "base_model_name_or_path": "../base"}), encoding="utf-8")
    (run / "stage1" / "lexedge_stage.json").write_text(json.dumps({
        "format": "lexedge-stage/1", "stage": "stage1",
        "data": {"dir": str(tmp_path / "tiny_beir"), "train_split": "train", "examples": 30}}),
        encoding="utf-8")
    return run / "stage1"


def test_bundle_carries_a_model_card_naming_base_licences_data_and_parity(
        finished_stage, calibration_corpus, tmp_path):
    bundle = export_bundle(ExportConfig(out=tmp_path / "carded", embedder=str(finished_stage),
                                        calibration=calibration_corpus, gates=LENIENT),
                           log=quiet)
    card = (bundle.path / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\nlibrary_name: \"onnx\"\nlicense: \"mit\"\n")
    assert "- example/tiny-bert: MIT" in card  # the base's licence, through the stage
    assert "embedder `stage1`: `tiny_beir`, split `train`, 30 examples" in card
    assert "| embedder.cosine_mean |" in card and "Parity (passed)" in card
    assert "- from `stage1` ← `" in card
    assert str(tmp_path) not in card  # no machine path
    (bundle.path / "README.md").write_text(card + "tampered", encoding="utf-8")
    with pytest.raises(LexedgeError, match="README.md"):
        Bundle.load(bundle.path)


def test_corrupted_bundle_file_is_refused_naming_it(int8_bundle, tmp_path):
    import shutil

    copy = shutil.copytree(int8_bundle, tmp_path / "copy")
    data = bytearray((copy / "embedder.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "embedder.onnx").write_bytes(bytes(data))
    with pytest.raises(LexedgeError, match=r"embedder\.onnx: sha256 mismatch \(file changed"):
        Bundle.load(copy)


def test_failed_gate_writes_nothing_and_keeps_the_existing_bundle(
        int8_bundle, base_model_dir, calibration_corpus, tmp_path, capsys):
    import shutil

    from lexedge.cli import main

    fresh = tmp_path / "fresh"
    argv = ["export", "--int8", "--embedder", str(base_model_dir), "--calibration",
            str(calibration_corpus), "--min-cosine", "1.01", "--min-overlap", "0"]
    assert main([*argv, "--out", str(fresh)]) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("lexedge: error: parity gate failed: embedder.cosine_mean")
    assert "< 1.01" in message
    assert not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no staging folder left behind

    existing = shutil.copytree(int8_bundle, tmp_path / "existing")
    before = {p.name: p.read_bytes() for p in existing.iterdir()}
    assert main([*argv, "--out", str(existing)]) == 2
    assert {p.name: p.read_bytes() for p in existing.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]


def test_forced_export_records_the_failed_gate(base_model_dir, calibration_corpus, tmp_path):
    bundle = export_bundle(ExportConfig(
        out=tmp_path / "forced", embedder=str(base_model_dir), calibration=calibration_corpus,
        gates=Gates(min_mean_cosine=1.01, min_top10_overlap=0.0), force=True), log=quiet)
    assert bundle.manifest["gates"] == {"status": "failed+forced",
                                        "failed": ["embedder.cosine_mean"]}
    assert bundle.manifest["embedder"]["parity"]["status"] == "failed+forced"


PASSAGES = ["employer worker hours article", "copyright", "lease tenant court notice law"]


def _served_and_torch_inputs(stage_dir, base_model_dir, calibration_corpus, out):
    """The FP32 bundle of the reranker in ``stage_dir``, its scores of ``worker hours``
    against ``PASSAGES``, and the torch inputs of the same pairs (one per pair, unpadded)."""
    bundle = export_bundle(ExportConfig(out=out, embedder=str(base_model_dir),
                                        reranker=str(stage_dir), precision="fp32",
                                        calibration=calibration_corpus), log=quiet)
    found = bundle.reranker(threads=1).score("worker hours", PASSAGES, batch_size=2)
    inputs = [{"input_ids": torch.tensor([encoding.ids]),
               "token_type_ids": torch.tensor([encoding.type_ids]),
               "attention_mask": torch.ones(1, len(encoding.ids), dtype=torch.long)}
              for encoding in torch_ids(stage_dir / "tokenizer.json",
                                        [("worker hours", p) for p in PASSAGES], max_length=64)]
    return bundle, found, inputs


def _stage_with_settings(reranker_dir, folder, **changes):
    """A copy of the reranker stage whose ``lexedge_model.json`` carries ``changes``."""
    import shutil

    shutil.copytree(reranker_dir, folder)
    settings = json.loads((folder / "lexedge_model.json").read_text())
    (folder / "lexedge_model.json").write_text(json.dumps(dict(settings, **changes)))
    return folder


def _segments_stage(reranker_dir, folder, pair: str, **changes):
    """A segments-head copy of the reranker stage with ``pair`` as its tokenizer's pair
    template (``[CLS]``/``[SEP]`` as specials); returns ``(folder, sep, cls)``."""
    from tokenizers import Tokenizer, processors

    tokenizer = Tokenizer.from_file(str(reranker_dir / "tokenizer.json"))
    sep, cls = tokenizer.token_to_id("[SEP]"), tokenizer.token_to_id("[CLS]")
    changes = {key: value(sep, cls) if callable(value) else value
               for key, value in changes.items()}
    stage = _stage_with_settings(reranker_dir, folder, head="segments", sep_token_id=sep,
                                 **changes)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair=pair, special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tokenizer.save(str(stage / "tokenizer.json"))
    return stage, sep, cls


def test_reranker_logits_match_torch(reranker_dir, base_model_dir, calibration_corpus, tmp_path):
    import transformers

    bundle, found, inputs = _served_and_torch_inputs(reranker_dir, base_model_dir,
                                                     calibration_corpus, tmp_path / "rr")
    assert bundle.manifest["reranker"]["inputs"] == ["input_ids", "attention_mask",
                                                     "token_type_ids"]
    model = transformers.BertForSequenceClassification.from_pretrained(reranker_dir).eval()
    with torch.no_grad():
        expected = [model(**pair).logits[0, 0] for pair in inputs]
    assert found.shape == (3,)
    np.testing.assert_allclose(found, np.array(expected), atol=1e-4)


def test_mean_head_reranker_exports_the_mean_pooled_logit(reranker_dir, base_model_dir,
                                                          calibration_corpus, tmp_path):
    """A stage recorded with ``head = "mean"`` exports the classifier over the mean of the
    last layer's tokens, not the CLS pooler path of the same weights."""
    import transformers

    mean_dir = _stage_with_settings(reranker_dir, tmp_path / "mean-reranker", head="mean")
    _, found, inputs = _served_and_torch_inputs(mean_dir, base_model_dir, calibration_corpus,
                                                tmp_path / "rr")
    model = transformers.BertForSequenceClassification.from_pretrained(mean_dir).eval()
    with torch.no_grad():
        mean = [model.classifier(model.bert(**pair).last_hidden_state.mean(dim=1))[0, 0]
                for pair in inputs]
        cls = [model(**pair).logits[0, 0] for pair in inputs]
    np.testing.assert_allclose(found, np.array(mean), atol=1e-4)
    assert np.abs(found - np.array(cls)).max() > 1e-3


def test_segments_head_reranker_exports_the_trainers_logit(reranker_dir, base_model_dir,
                                                           calibration_corpus, tmp_path):
    """``head = "segments"`` (cosine of the query's and the passage's token means over a
    temperature) exports to a graph that scores exactly as the trainer's CrossEncoder."""
    import transformers

    from lexedge.trainer.reranker.model import CrossEncoder
    from lexedge.trainer.stage import EncoderSettings

    segments_dir, sep, _ = _segments_stage(reranker_dir, tmp_path / "segments-reranker",
                                           "[CLS] $A [SEP] $B:1 [SEP]:1", head_temperature=0.1)
    _, found, inputs = _served_and_torch_inputs(segments_dir, base_model_dir,
                                                calibration_corpus, tmp_path / "rr")
    model = transformers.BertForSequenceClassification.from_pretrained(segments_dir).eval()
    reference = CrossEncoder(model, EncoderSettings(head="segments", head_temperature=0.1,
                                                    sep_token_id=sep))
    for pair in inputs:  # [CLS] query [SEP] passage [SEP]
        assert pair["input_ids"][0].tolist().count(sep) == 2
    with torch.no_grad():
        expected = [float(reference(**pair)[0]) for pair in inputs]
    np.testing.assert_allclose(found, np.array(expected), atol=1e-4)
    assert np.all(np.abs(found) <= 1 / 0.1 + 1e-4)  # a cosine over the temperature


def test_split_attention_reranker_exports_the_trainers_logit(reranker_dir, base_model_dir,
                                                             calibration_corpus, tmp_path):
    """``separate_layers`` (query and passage apart below it, a biased joint attention
    above, under XLM-R's ``A [SEP] [SEP] B`` template) exports to a graph that scores
    exactly as the trainer's CrossEncoder, padded batches included, and reads no segment
    ids."""
    import transformers

    from lexedge.trainer.reranker.model import CrossEncoder
    from lexedge.trainer.stage import EncoderSettings

    split_dir, sep, cls = _segments_stage(
        reranker_dir, tmp_path / "split-reranker", "[CLS] $A [SEP] [SEP] $B [SEP]",
        head_temperature=0.1, cls_token_id=lambda sep, cls: cls, separate_layers=1,
        cross_attention_bias=-2.0)
    split = dict(head="segments", head_temperature=0.1, sep_token_id=sep, cls_token_id=cls,
                 separate_layers=1, cross_attention_bias=-2.0)
    bundle, found, inputs = _served_and_torch_inputs(split_dir, base_model_dir,
                                                     calibration_corpus, tmp_path / "rr")
    assert bundle.manifest["reranker"]["inputs"] == ["input_ids", "attention_mask"]
    model = transformers.BertForSequenceClassification.from_pretrained(split_dir).eval()
    reference = CrossEncoder(model, EncoderSettings(**split))
    joint = CrossEncoder(model, EncoderSettings(head="segments", head_temperature=0.1,
                                                sep_token_id=sep))
    with torch.no_grad():
        expected = [float(reference(**pair)[0]) for pair in inputs]
        unsplit = [float(joint(**pair)[0]) for pair in inputs]
    np.testing.assert_allclose(found, np.array(expected), atol=1e-4)
    assert np.abs(found - np.array(unsplit)).max() > 1e-3


def test_export_command_is_registered_without_importing_torch():
    import subprocess
    import sys

    code = ("import sys; from lexedge.cli import build_parser; build_parser(); "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'transformers', 'onnx'))))")
    result = subprocess.run([sys.executable, "-c", "import json; " + code],
                            capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []


def test_ffn_output_group_stays_fp32(base_model_dir, tmp_path):
    import onnx

    from lexedge.export.onnx_export import optimize_graph
    from lexedge.export.quantize import quantize_int8

    stage = load_merged(base_model_dir, "embedder")
    export_onnx(stage, tmp_path / "raw.onnx")
    optimize_graph(tmp_path / "raw.onnx", tmp_path / "fused.onnx", stage)
    settings = quantize_int8(tmp_path / "fused.onnx", tmp_path / "mixed.onnx",
                             keep_fp32=("ffn-output",))
    assert settings["fp32_nodes"] == 2  # one FFN down-projection per layer
    kept = [n.name for n in onnx.load(str(tmp_path / "mixed.onnx")).graph.node
            if n.op_type == "MatMul"]
    assert len(kept) == 2 and all(name.endswith("output/dense/MatMul") for name in kept)
    with pytest.raises(LexedgeError, match="unknown FP32 node group"):
        quantize_int8(tmp_path / "fused.onnx", tmp_path / "x.onnx", keep_fp32=("everything",))


@pytest.mark.skipif(not os.environ.get("LEXEDGE_SLOW_TESTS"),
                    reason="the dynamo exporter takes about a minute; LEXEDGE_SLOW_TESTS=1 runs it")
def test_dynamo_exporter_gives_the_same_graph_outputs(base_model_dir, tmp_path):
    import onnxruntime as ort

    from lexedge.export.onnx_export import graph_module

    stage = load_merged(base_model_dir, "embedder")
    export_onnx(stage, tmp_path / "dynamo.onnx", exporter="dynamo")
    input_ids = torch.randint(5, 150, (3, 23), generator=torch.Generator().manual_seed(4))
    mask = torch.ones_like(input_ids)
    mask[0, 5:] = 0
    with torch.no_grad():
        expected = graph_module(stage)(input_ids, mask).numpy()
    session = ort.InferenceSession(str(tmp_path / "dynamo.onnx"),
                                   providers=["CPUExecutionProvider"])
    found = session.run(None, {"input_ids": input_ids.numpy(), "attention_mask": mask.numpy()})[0]
    np.testing.assert_allclose(found, expected, atol=1e-5)


def test_export_refuses_a_users_folder_before_any_work(base_model_dir, tmp_path, capsys):
    from lexedge.cli import main

    userdir = tmp_path / "userdir"
    userdir.mkdir()
    (userdir / "thesis.txt").write_text("precious")
    assert main(["export", "--int8", "--embedder", str(base_model_dir), "--out",
                 str(userdir)]) == 2
    assert "userdir: exists and is not a lexedge bundle" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["userdir"]
    assert (userdir / "thesis.txt").read_text() == "precious"


def test_export_json_says_what_was_written(base_model_dir, calibration_corpus, tmp_path,
                                           capsys):
    """Issue 23: `--json` prints the bundle as `bundle info --json` does, plus its gates."""
    import json

    from lexedge.cli import main

    assert main(["export", "--int8", "--embedder", str(base_model_dir), "--calibration",
                 str(calibration_corpus), "--out", str(tmp_path / "b"), "--json",
                 "--alpha", "0.5", "--alpha-for", "ja=0.7"]) == 0
    written = json.loads(capsys.readouterr().out)
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["search"] == {"alpha": 0.5, "alpha_by_analyzer": {"ja": 0.7}}
    with pytest.raises(SystemExit) as refused:  # argparse refuses it by name
        main(["export", "--int8", "--embedder", str(base_model_dir), "--out",
              str(tmp_path / "c"), "--alpha-for", "fr=0.7"])
    assert refused.value.code == 2
    assert "fr=0.7: expected ANALYZER=A" in capsys.readouterr().err
    assert written["path"] == str(tmp_path / "b")
    assert written["bytes"] > 0 and written["models"]["embedder"]["precision"] == "int8"
    assert written["gates"]["status"] == "passed"
