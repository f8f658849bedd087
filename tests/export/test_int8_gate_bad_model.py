"""The INT8 parity gate refuses a genuinely bad INT8 model with its default thresholds (issue
#5's: mean cosine 0.99, tie-aware top-10 overlap 0.90), not only an impossible threshold.

The bad model is the real quantised graph with one MatMul's weight scale multiplied by 50 (a
quantiser bug, or a scale written for the wrong channel, would look like this): every output
of that layer is 50 times too large, the FP32 graph and the torch model are untouched, so
only the quantisation check can see it (issue 18, item 5)."""

import os
import re

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from onnx import numpy_helper  # noqa: E402

from lexedge.export import bundle as bundle_module  # noqa: E402
from lexedge.export.bundle import ExportConfig, export_bundle  # noqa: E402
from lexedge.export.parity import Gates  # noqa: E402
from lexedge.runtime.bundle import Bundle  # noqa: E402
from lexedge.runtime.errors import LexedgeError  # noqa: E402

SCALE_DAMAGE = 50.0


def damage_first_matmul_scale(path) -> str:
    """Multiply the weight scale of the graph's first quantised MatMul by
    :data:`SCALE_DAMAGE`; return the initializer's name."""
    model = onnx.load(str(path))
    matmul = next(n for n in model.graph.node if n.op_type == "MatMulInteger")
    # onnxruntime's dynamic quantiser names a weight W's tensors W_quantized and W_scale
    scale_name = matmul.input[1].removesuffix("_quantized") + "_scale"
    scale = next(i for i in model.graph.initializer if i.name == scale_name)
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * SCALE_DAMAGE,
                                           scale_name))
    onnx.save(model, str(path))
    return scale_name


@pytest.fixture
def damaged_quantiser(monkeypatch):
    """``export_bundle`` whose INT8 graph has a damaged scale; the names damaged."""
    damaged = []
    real_quantize = bundle_module.quantize_int8

    def quantize_then_damage(source, target, **options):
        settings = real_quantize(source, target, **options)
        damaged.append(damage_first_matmul_scale(target))
        return settings

    monkeypatch.setattr(bundle_module, "quantize_int8", quantize_then_damage)
    return damaged


def test_export_ships_the_undamaged_int8_model_with_the_default_gates(base_model_dir,
                                                                     calibration_corpus,
                                                                     tmp_path):
    """The control: the same export, undamaged, passes every default gate, so the refusal
    below is the damage's doing."""
    bundle = export_bundle(ExportConfig(out=tmp_path / "int8", embedder=str(base_model_dir),
                                        calibration=calibration_corpus), log=lambda *a: None)
    parity = bundle.manifest["embedder"]["parity"]
    assert parity["status"] == "passed"
    assert parity["quantization"]["cosine_mean"] >= Gates().min_mean_cosine


def test_export_refuses_an_int8_model_with_a_damaged_scale(base_model_dir, calibration_corpus,
                                                          tmp_path, damaged_quantiser):
    out = tmp_path / "int8"
    try:
        shipped = export_bundle(ExportConfig(out=out, embedder=str(base_model_dir),
                                             calibration=calibration_corpus),
                                log=lambda *a: None)
    except LexedgeError as refused:
        message = str(refused)
    else:
        pytest.fail(f"the export shipped an INT8 graph whose {damaged_quantiser} was multiplied "
                    f"by {SCALE_DAMAGE:g}; its gates: "
                    f"{shipped.manifest['embedder']['parity']['gates']}")
    assert damaged_quantiser, "the quantised graph was never damaged"
    assert "parity gate failed" in message, message
    cosine = re.search(r"embedder\.cosine_mean ([0-9.]+) < ([0-9.]+)", message)
    assert cosine, f"the mean-cosine gate did not refuse the damaged model: {message}"
    assert float(cosine[2]) == Gates().min_mean_cosine  # the default threshold
    assert float(cosine[1]) < 0.95  # far below it, not a rounding miss
    assert not out.exists(), "a refused export wrote its bundle"


def test_forcing_a_damaged_int8_model_records_the_failed_gate(base_model_dir,
                                                             calibration_corpus, tmp_path,
                                                             damaged_quantiser):
    bundle = export_bundle(ExportConfig(out=tmp_path / "int8", embedder=str(base_model_dir),
                                        calibration=calibration_corpus, force=True),
                           log=lambda *a: None)
    gates = Bundle.load(bundle.path).manifest["gates"]
    assert gates["status"] == "failed+forced", \
        f"a damaged INT8 graph ({damaged_quantiser} x{SCALE_DAMAGE:g}) recorded as {gates}"
    assert "embedder.cosine_mean" in bundle.manifest["gates"]["failed"]
