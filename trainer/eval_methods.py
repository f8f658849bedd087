"""The trainer's methods for ``lexedge eval``, registered here and nowhere else: ``dense
--model STAGE_DIR`` (``dense-model``: :mod:`lexedge.trainer.embedder.retriever`) and
``rerank --model STAGE_DIR`` (``rerank-model``: :mod:`lexedge.trainer.reranker.retriever`).

The runtime keeps a registry of evaluation methods and never imports the trainer
(:mod:`lexedge.runtime.evaluation`); :func:`register` fills it. ``lexedge``'s command line
calls it when it adds the trainer's commands, and every :class:`~lexedge.trainer.curriculum.
Curriculum` before it evaluates a stage. Each factory imports its retriever when a method
runs: parsing the command line loads no torch, and training the embedder never imports the
reranker.
"""

from __future__ import annotations

from lexedge.runtime.evaluation import register_method


def dense_model(config, dataset):
    """``dense-model``: exact dense retrieval with an embedder stage in torch."""
    from lexedge.trainer.embedder.retriever import dense_model_retriever

    return dense_model_retriever(config, dataset)


def rerank_model(config, dataset):
    """``rerank-model``: a first stage's candidates re-ordered by a reranker stage in torch."""
    from lexedge.trainer.reranker.retriever import rerank_model_retriever

    return rerank_model_retriever(config, dataset)


def register() -> None:
    """Make ``dense --model DIR`` and ``rerank --model DIR`` available to ``lexedge eval``
    and ``run_evaluation``."""
    register_method("dense-model", dense_model)
    register_method("rerank-model", rerank_model)
