"""Choosing the stages to ship (2602.00805: the embedder and the reranker peak at different
stages, so every pairing is measured end to end).

* ``grid.py`` — ``lexedge grid``: every embedder stage × reranker stage × budget, dense and
  fused with BM25, written to ``grid.json``.
* ``select.py`` — ``lexedge select``: one rule per component over ``grid.json``, written to
  ``selection.json`` for ``lexedge export --selection``.
"""
