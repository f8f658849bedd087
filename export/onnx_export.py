"""Export a merged stage to ONNX with dynamic batch and sequence axes, then fuse it.

The graphs do the whole job the runtime needs, so the laptop side stays a tokenizer and one
``session.run``:

* embedder: ``input_ids``, ``attention_mask`` [batch, seq] -> ``sentence_embedding``
  [batch, dim], pooled (masked mean, or the first token) and L2-normalised inside the graph
  (mean pooling as in Sentence-BERT, Reimers and Gurevych, 2019, arXiv:1908.10084).
* reranker: the same inputs over ``query [SEP] passage`` (plus ``token_type_ids`` when the
  model has segment embeddings) -> ``logits`` [batch].

The output is never named ``embedding``: that name produced an invalid graph here
(``../shared/OFFLINE-MODELS.md``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from lexedge.runtime.errors import LexedgeError

from .merge import EMBEDDER, MergedStage

OUTPUTS = {"embedder": "sentence_embedding", "reranker": "logits"}
DEFAULT_OPSET = 17
EXPORTERS = ("torchscript", "dynamo")


def graph_inputs(stage: MergedStage) -> list[str]:
    """``token_type_ids`` only where it changes the answer: a pair encoder with more than one
    segment embedding. A single text always has segment 0, which BERT fills in itself."""
    names = ["input_ids", "attention_mask"]
    split = int(stage.settings["separate_layers"]) > 0  # reads segment 0 only
    if stage.kind != EMBEDDER and not split and \
            getattr(stage.model.config, "type_vocab_size", 1) > 1:
        names.append("token_type_ids")
    return names


def graph_module(stage: MergedStage):
    """The torch module that is exported: the model plus pooling or the logit squeeze."""
    import torch

    from lexedge.trainer.reranker.model import (encoder_of, mean_head_logits, mean_head_parts,
                                                segments_head_logits)
    from lexedge.trainer.stage import EncoderSettings

    class EmbedderGraph(torch.nn.Module):
        def __init__(self, model, pooling: str, normalize: bool):
            super().__init__()
            self.model, self.pooling, self.normalize = model, pooling, normalize

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=token_type_ids).last_hidden_state
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=-1)
            return pooled

    class RerankerGraph(torch.nn.Module):
        def __init__(self, model, settings: dict):
            super().__init__()
            self.model, self.head = model, settings["head"]
            self.settings = EncoderSettings.from_dict(settings)

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            if self.head == "segments":  # the trainer's CrossEncoder, head = "segments"
                return segments_head_logits(
                    encoder_of(self.model), self.settings, input_ids=input_ids,
                    attention_mask=attention_mask, token_type_ids=token_type_ids)
            if self.head == "mean":  # the trainer's CrossEncoder, head = "mean"
                return mean_head_logits(*mean_head_parts(self.model), input_ids=input_ids,
                                        attention_mask=attention_mask,
                                        token_type_ids=token_type_ids)
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).logits[:, 0]

    if stage.kind == EMBEDDER:
        module = EmbedderGraph(stage.model, stage.settings["pooling"],
                               bool(stage.settings["normalize"]))
    else:
        module = RerankerGraph(stage.model, stage.settings)
    # A new wrapper starts in training mode, and the exporter restores that mode on exit,
    # which would switch dropout back on in the model it wraps.
    return module.eval()


def example_inputs(stage: MergedStage) -> dict:
    """Two rows of unequal length, so tracing sees padding and specialises on nothing."""
    import torch

    vocab = int(getattr(stage.model.config, "vocab_size", 1000))
    input_ids = torch.randint(min(5, vocab - 1), vocab, (2, 11), generator=torch.Generator()
                              .manual_seed(0))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, 5:] = 1
    arrays = {"input_ids": input_ids, "attention_mask": attention_mask,
              "token_type_ids": token_type_ids}
    return {name: arrays[name] for name in graph_inputs(stage)}


def export_onnx(stage: MergedStage, path: str | Path, exporter: str = "torchscript",
                opset: int = DEFAULT_OPSET) -> dict:
    """Write the stage's graph to ``path`` (one file, weights inside). Returns its settings."""
    import torch

    if exporter not in EXPORTERS:
        raise LexedgeError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    module, inputs = graph_module(stage), example_inputs(stage)
    names, output = list(inputs), OUTPUTS[stage.kind]
    options = dict(input_names=names, output_names=[output], opset_version=opset)
    if exporter == "torchscript":
        axes = {name: {0: "batch", 1: "sequence"} for name in names}
        axes[output] = {0: "batch"}
        options.update(dynamo=False, dynamic_axes=axes, do_constant_folding=True)
    else:
        batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
        options.update(dynamo=True, external_data=False,
                       dynamic_shapes={name: {0: batch, 1: sequence} for name in names})
    with torch.no_grad(), quiet_libraries():
        torch.onnx.export(module, tuple(inputs.values()), str(path), **options)
    return {"exporter": exporter, "opset": opset, "torch": torch.__version__,
            "attn_implementation": "eager"}


def optimize_graph(source: str | Path, target: str | Path, stage: MergedStage) -> dict:
    """Fuse attention, the embedding's layer norm and the GELUs (onnxruntime's BERT optimizer,
    python fusions only: the runtime applies its own hardware-specific level at load time).
    Returns the count of each fused operator.

    The residual adds and their layer norms stay apart (``Add`` + ``LayerNormalization``):
    onnxruntime's CPU kernel for the fused ``SkipLayerNormalization`` took 453 us where the
    pair takes 72 (a [4, 76, 384] batch on one thread, onnxruntime 1.32), and was a third of
    the 3-layer built-in's encoding time (``bench/cpu_encoding.py``)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    config = stage.model.config
    fusions = FusionOptions("bert")
    fusions.enable_skip_layer_norm = False
    fusions.enable_bias_skip_layer_norm = False
    with quiet_libraries():
        optimized = optimize_model(str(source), model_type="bert",
                                   num_heads=int(getattr(config, "num_attention_heads", 0)),
                                   hidden_size=int(getattr(config, "hidden_size", 0)),
                                   optimization_options=fusions, opt_level=0, use_gpu=False)
        optimized.save_model_to_file(str(target), use_external_data_format=False)
    fused = optimized.get_fused_operator_statistics()
    return {"optimizer": "onnxruntime.transformers bert", "opt_level": 0,
            "fused": {name: count for name, count in fused.items() if count}}


class quiet_libraries:
    """Silence the exporters' and optimizer's per-node chatter; errors still raise."""

    names = ("onnxruntime.transformers", "onnxscript", "torch.onnx", "root")

    def __enter__(self):
        import warnings

        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        self._levels = {n: logging.getLogger(n if n != "root" else None).level for n in self.names}
        for name in self.names:
            logging.getLogger(name if name != "root" else None).setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc):
        for name, level in self._levels.items():
            logging.getLogger(name if name != "root" else None).setLevel(level)
        self._warnings.__exit__(*exc)
        return False
