"""The reranker's distillation teacher: an embedder stage scoring each training group (the
query against its positive and negatives), so the cross-encoder learns from graded soft
targets as well as from the one-hot label (RocketQAv2: Ren et al., 2021, arXiv:2110.07367,
distils between a retriever and a reranker listwise).

A curriculum embedder is the natural teacher here: trained on the same data, it is stronger
than a cross-encoder whose head starts fresh, for the first thousands of steps at least.
"""

from __future__ import annotations

import numpy as np
import torch

from lexedge.trainer.embedder.model import encode, load_stage_embedder
from lexedge.trainer.lora import resolve_model


class EmbedderTeacher:
    """Cosine similarities of an embedder stage, divided by ``temperature``.

    Passage vectors are kept by text for the run (each passage is encoded once, however many
    groups it appears in); queries are encoded per batch.

    Args:
        folder: an embedder stage folder or a built-in base name.
        device: where the teacher runs.
        temperature: divides the cosines (E5 was trained at 0.01).
        batch_size: encoding batch size.
    """

    def __init__(self, folder: str, device, *, temperature: float = 0.01,
                 batch_size: int = 32):
        self.stage = load_stage_embedder(resolve_model(folder), device)
        self.temperature = temperature
        self.batch_size = batch_size
        self._passages: dict[str, np.ndarray] = {}

    def logits(self, queries: list[str], groups: list[list[str]]) -> torch.Tensor:
        """``[len(queries), group size]``: query ``i`` against each passage of ``groups[i]``."""
        stage = self.stage
        missing = list(dict.fromkeys(p for group in groups for p in group
                                     if p not in self._passages))
        if missing:
            vectors = encode(stage.embedder, stage.tokenizer,
                             [stage.settings.passage_prefix + p for p in missing],
                             max_length=stage.passage_length, batch_size=self.batch_size)
            self._passages.update(zip(missing, vectors))
        query_vectors = encode(stage.embedder, stage.tokenizer,
                               [stage.settings.query_prefix + q for q in queries],
                               max_length=stage.query_length, batch_size=self.batch_size)
        passages = np.stack([[self._passages[p] for p in group] for group in groups])
        scores = np.einsum("gd,gnd->gn", query_vectors, passages) / self.temperature
        return torch.from_numpy(scores.astype(np.float32))
