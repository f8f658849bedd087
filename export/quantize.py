"""Dynamic INT8 quantisation with onnxruntime: int8 weights with a scale per output channel,
activations quantised to uint8 at run time, batch by batch (no calibration data needed).

Per-channel scales matter: with one scale per tensor, all-MiniLM-L6-v2's INT8 embeddings fall
to a mean cosine of about 0.96 against FP32; per channel they stay about 0.99
(``../shared/OFFLINE-MODELS.md``; Jacob et al., 2018, arXiv:1712.05877 for the integer scheme).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from lexedge.runtime.errors import LexedgeError

from .onnx_export import quiet_libraries


# Node groups that may stay FP32. ``ffn-output``: each layer's FFN down-projection, whose
# GELU input has the outliers that one dynamic activation scale per tensor handles worst
# (Bondarenko et al., 2021, arXiv:2109.12948). On multilingual-e5-small keeping them FP32
# raised the mean cosine to FP32 from 0.9957 to 0.9981 for 21 MB (118 -> 139 MB).
KEEP_FP32_GROUPS = {
    "ffn-output": lambda name: name.endswith("output/dense/MatMul") and "attention" not in name,
}


def quantize_int8(source: str | Path, target: str | Path, per_channel: bool = True,
                  reduce_range: bool = False, keep_fp32: tuple[str, ...] = ()) -> dict:
    """Quantise ``source`` (FP32 ONNX, fused or not) into ``target``; returns the settings
    and the count of quantised operators, for the manifest.

    Args:
        per_channel: one weight scale per output channel (default) or per tensor.
        reduce_range: 7-bit weights, for CPUs whose u8*s8 products saturate; off by default
            because the parity gates measure whether it is needed.
        keep_fp32: names from :data:`KEEP_FP32_GROUPS` whose nodes are left unquantised.
    """
    import onnx
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    unknown = set(keep_fp32) - set(KEEP_FP32_GROUPS)
    if unknown:
        raise LexedgeError(f"unknown FP32 node group(s) {sorted(unknown)}; known: "
                           f"{', '.join(KEEP_FP32_GROUPS)}")
    names = [node.name for node in onnx.load(str(source), load_external_data=False).graph.node]
    excluded = [n for n in names if any(KEEP_FP32_GROUPS[g](n) for g in keep_fp32)]
    settings = {"method": "dynamic", "weights": "QInt8", "activations": "QUInt8 (dynamic)",
                "per_channel": per_channel, "reduce_range": reduce_range,
                "keep_fp32": list(keep_fp32), "fp32_nodes": len(excluded),
                "onnxruntime": onnxruntime.__version__}
    with quiet_libraries():  # it advises pre-processing on every call; parity measures instead
        quantize_dynamic(
            model_input=str(source), model_output=str(target), per_channel=per_channel,
            reduce_range=reduce_range, weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
            extra_options={
                # A fused graph holds contrib operators whose outputs have no inferred type;
                # without a default the quantiser stops on them.
                "DefaultTensorType": onnx.TensorProto.FLOAT,
                # Only weight matrices: an unfused graph's activation x activation products
                # (attention scores) would otherwise be quantised too.
                "MatMulConstBOnly": True})
    operators = Counter(node.op_type for node in onnx.load(str(target), load_external_data=False)
                        .graph.node)
    settings["quantized_operators"] = {
        op: n for op, n in sorted(operators.items())
        if op.startswith("Q") or "Quantize" in op or op.endswith("Integer")}
    return settings
