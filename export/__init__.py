"""Export: turn trained stages into the INT8 ONNX bundle the laptop runs (issue #5).

The steps, one module each:

1. ``merge.py`` — load a stage folder (a Hugging Face model, or a peft LoRA adapter stacked on
   another stage) and fold every adapter into the base weights: one plain torch model.
2. ``onnx_export.py`` — wrap it so pooling and L2 normalisation (embedder) or the single logit
   (reranker) happen inside the graph, export with dynamic batch and sequence axes, and fuse
   attention with onnxruntime's transformer optimizer.
3. ``quantize.py`` — dynamic INT8 quantisation, per-channel int8 weights.
4. ``parity.py`` — measure FP32 against INT8 on a calibration sample (embedding cosine, top-10
   overlap, reranker Spearman) and gate the export on it.
5. ``bundle.py`` — write ``embedder.onnx``, tokenizers, optional ``reranker.onnx`` and
   ``manifest.json`` atomically; ``lexedge.runtime.bundle`` reads it without torch.

Why not optimum: its exporter (optimum-onnx 0.1 with optimum 2.1) requires
transformers < 4.58, while the trainer needs transformers 5 and peft in the same environment;
plain optimum 2.3 next to transformers 5 has no exporter at all. ``torch.onnx.export`` and
onnxruntime's own optimizer and quantiser already do everything a bundle needs, with two
dependencies we have anyway.

Measured choices (see ``../shared/OFFLINE-MODELS.md``):

* The TorchScript exporter (``dynamo=False``) is the default: onnxruntime's BERT optimizer
  recognises its attention pattern (all-MiniLM-L6-v2: 6 of 6 attention blocks fused, plus the
  embedding and skip layer norms), while on the dynamo exporter's graph it fuses none. Models
  are exported with ``attn_implementation="eager"`` for the same reason.
* Per-channel weight scales: per-tensor INT8 drops MiniLM's mean cosine to FP32 to about 0.96;
  per-channel keeps it about 0.99.
"""
