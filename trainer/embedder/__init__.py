"""The embedder family: a bi-encoder that turns a query or a passage into one vector.

* ``model.py`` — :class:`~lexedge.trainer.embedder.model.Embedder` (encoder + pooling +
  normalisation), batched encoding, a stage folder loaded ready to encode.
* ``family.py`` — how the curriculum trains it: InfoNCE over in-batch and hard negatives.
* ``encodings.py`` — corpus encodings, shared by evaluation and the next stage's mining.
* ``retriever.py`` — exact dense retrieval: ``lexedge eval --method dense --model DIR``, and
  the rankings negatives are mined from.

:mod:`lexedge.trainer.reranker` has the same modules for the cross-encoder.
"""
