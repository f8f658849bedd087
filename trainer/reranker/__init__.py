"""The reranker family: a cross-encoder that reads ``query [SEP] passage`` and gives one logit.

* ``model.py`` — :class:`~lexedge.trainer.reranker.model.CrossEncoder` and its heads
  (``pooler``, ``mean``, ``segments`` with optional split attention), batched pair scoring.
* ``family.py`` — how the curriculum trains it: a listwise loss over the embedder's
  candidates, optionally distilled from a teacher.
* ``surgery.py`` — its starting encoder: an embedder stage merged, layers cut.
* ``teacher.py`` — the embedder stage whose scores it distils.
* ``retriever.py`` — ``lexedge eval --method rerank --model DIR`` over a first stage.

:mod:`lexedge.trainer.embedder` has the same ``model``, ``family`` and ``retriever`` modules.
"""
