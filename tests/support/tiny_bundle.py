"""A real but tiny bundle, built without torch: character-level tokenizer, an ONNX embedder
(mean of character embeddings, L2-normalised) and an ONNX "reranker" (sum of per-character
weights). Enough to drive the runtime's served path end to end in milliseconds."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from lexedge.runtime.bundle import write_manifest
from lexedge.runtime.provenance import PROVENANCE, provenance


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tokenizer(characters: str, path: Path) -> None:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors

    vocabulary = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
    for ch in sorted(set(characters)):
        vocabulary.setdefault(ch, len(vocabulary))
    tokenizer = Tokenizer(models.WordLevel(vocabulary, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"\S"), behavior="isolated")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer.save(str(path))
    return len(vocabulary)


def _embedder_graph(vocabulary: int, dimension: int, path: Path, seed: int,
                    layer_norm: bool = False) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    random = np.random.default_rng(seed)
    table = random.normal(size=(vocabulary, dimension)).astype(np.float32)
    # with ``layer_norm`` the character vectors pass a LayerNormalization before pooling, as a
    # transformer's last layer does: where a late-interaction graph takes its token states
    scale = random.uniform(0.5, 1.5, size=dimension).astype(np.float32)
    bias = random.normal(scale=0.1, size=dimension).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"],
                         ["gathered" if layer_norm else "vectors"]),
        *([helper.make_node("LayerNormalization", ["gathered", "ln_scale", "ln_bias"],
                            ["vectors"], axis=-1, epsilon=1e-5)] if layer_norm else []),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask", "last"], ["mask3"]),
        helper.make_node("Mul", ["vectors", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "one"], ["summed"], keepdims=0),
        helper.make_node("LpNormalization", ["summed"], ["sentence_embedding"], axis=1, p=2),
    ]
    graph = helper.make_graph(
        nodes, "tiny_embedder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT,
                                       ["batch", dimension])],
        [numpy_helper.from_array(table, "table"),
         numpy_helper.from_array(np.array([-1], dtype=np.int64), "last"),
         numpy_helper.from_array(np.array([1], dtype=np.int64), "one"),
         *([numpy_helper.from_array(scale, "ln_scale"), numpy_helper.from_array(bias, "ln_bias")]
           if layer_norm else [])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _reranker_graph(vocabulary: int, path: Path, seed: int) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(seed).normal(size=(vocabulary,)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["weights", "input_ids"], ["per_token"]),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["per_token", "mask"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "one"], ["logits"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "tiny_reranker",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch"])],
        [numpy_helper.from_array(weights, "weights"),
         numpy_helper.from_array(np.array([1], dtype=np.int64), "one")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _late_interaction_graph(vocabulary: int, dimension: int, path: Path, seed: int) -> None:
    """Token states: each character's own unit vector; token weights: the mask."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = np.random.default_rng(seed).normal(size=(vocabulary, dimension)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["vectors"]),
        helper.make_node("LpNormalization", ["vectors"], ["token_states"], axis=-1, p=2),
        helper.make_node("Cast", ["attention_mask"], ["token_weights"], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes, "tiny_late_interaction",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("token_states", TensorProto.FLOAT,
                                       ["batch", "seq", dimension]),
         helper.make_tensor_value_info("token_weights", TensorProto.FLOAT, ["batch", "seq"])],
        [numpy_helper.from_array(table, "table")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def build_tiny_bundle(out: Path, characters: str, reranker: bool | str = True,
                      dimension: int = 16, seed: int = 0, rerank_weight: float | None = None,
                      alpha: float | None = None, alpha_by_analyzer: dict | None = None,
                      layer_norm: bool = False, reranker_seed: int | None = None) -> Path:
    """Write a bundle folder at ``out`` whose vocabulary covers ``characters`` (the reranker
    records ``rerank_weight`` and the manifest ``search.alpha`` when given, as an export from
    a selection does; ``layer_norm``: the embedder normalises its token vectors before
    pooling). ``reranker="late_interaction"`` gives a late-interaction reranker (each
    character's own unit vector, ``reranker_seed`` choosing them) instead of a cross-encoder."""
    out.mkdir(parents=True, exist_ok=True)
    vocabulary = _tokenizer(characters, out / "embedder.tokenizer.json")
    _embedder_graph(vocabulary, dimension, out / "embedder.onnx", seed, layer_norm)
    common = {"inputs": ["input_ids", "attention_mask"], "max_length": 64, "pad_id": 0,
              "query_prefix": "", "passage_prefix": "", "precision": "fp32"}
    manifest = {"format": 1, PROVENANCE: provenance("tests.support.tiny_bundle"),
                "embedder": {"file": "embedder.onnx", "tokenizer": "embedder.tokenizer.json",
                             "output": "sentence_embedding", "dimension": dimension,
                             "pooling": "mean", "normalize": True, **common},
                "reranker": None, "selection": None, "metrics": None,
                "search": None if alpha is None and not alpha_by_analyzer else {
                    **({} if alpha is None else {"alpha": alpha}),
                    **({"alpha_by_analyzer": alpha_by_analyzer} if alpha_by_analyzer
                       else {})}}
    if reranker == "late_interaction":
        _late_interaction_graph(vocabulary, dimension, out / "reranker.onnx",
                                seed + 1 if reranker_seed is None else reranker_seed)
        manifest["reranker"] = {"kind": "late_interaction", "file": "reranker.onnx",
                                "tokenizer": "embedder.tokenizer.json",
                                "output": "token_states", "weights_output": "token_weights",
                                "dimension": dimension, **common}
    elif reranker:
        (out / "reranker.tokenizer.json").write_bytes(
            (out / "embedder.tokenizer.json").read_bytes())
        _reranker_graph(vocabulary, out / "reranker.onnx", seed + 1)
        manifest["reranker"] = {"file": "reranker.onnx", "tokenizer": "reranker.tokenizer.json",
                                "output": "logits", **common}
        if rerank_weight is not None:
            manifest["reranker"]["rerank_weight"] = rerank_weight
    manifest["files"] = {p.name: _sha256(p) for p in sorted(out.iterdir())
                         if p.name != "manifest.json"}
    write_manifest(out, manifest)
    return out
