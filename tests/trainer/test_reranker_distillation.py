"""Distillation from a teacher's scores (issue 4, item 1): the loss mixes the listwise
cross-entropy with KL(teacher || student) over each group, and an embedder stage is the
teacher, its cosines over the group divided by a temperature."""

import numpy as np
import pytest
import torch

from lexedge.runtime.errors import LexedgeError
from lexedge.trainer.losses import ListwiseDistillationLoss, ListwiseSoftmaxLoss


def test_distillation_loss_is_the_weighted_mix_of_cross_entropy_and_kl():
    student = torch.tensor([[1.0, 0.5, -1.0], [0.0, 2.0, 0.3]])
    teacher = torch.tensor([[3.0, 1.0, 0.0], [1.0, 1.5, -2.0]])
    p = np.exp(teacher.numpy()) / np.exp(teacher.numpy()).sum(1, keepdims=True)
    log_q = student.numpy() - np.log(np.exp(student.numpy()).sum(1, keepdims=True))
    kl = float((p * (np.log(p) - log_q)).sum(1).mean())
    ce = float(ListwiseSoftmaxLoss()(student))
    for weight in (0.0, 0.3, 1.0):
        expected = (1 - weight) * ce + weight * kl
        assert float(ListwiseDistillationLoss(weight)(student, teacher)) == pytest.approx(
            expected, rel=1e-5)
    assert float(ListwiseDistillationLoss(1.0)(teacher, teacher)) == pytest.approx(0.0,
                                                                                   abs=1e-6)
    with pytest.raises(ValueError, match="within"):
        ListwiseDistillationLoss(1.5)


def test_a_distillation_step_moves_the_student_towards_the_teacher():
    teacher = torch.tensor([[0.0, 3.0, 1.0]])  # the teacher prefers a negative
    student = torch.zeros(1, 3, requires_grad=True)
    ListwiseDistillationLoss(1.0)(student, teacher).backward()
    assert int(torch.argmin(student.grad)) == 1  # gradient descent raises column 1 most


def test_embedder_teacher_scores_are_its_cosines_over_the_temperature(finished_run):
    from lexedge.trainer.embedder.model import encode
    from lexedge.trainer.reranker.teacher import EmbedderTeacher

    output, _ = finished_run
    teacher = EmbedderTeacher(str(output / "stage2"), torch.device("cpu"), temperature=0.05)
    groups = [["employer worker hours", "copyright"], ["lease notice", "employer worker hours"]]
    scores = teacher.logits(["worker hours", "tenant"], groups)
    stage = teacher.stage
    q = encode(stage.embedder, stage.tokenizer,
               [stage.settings.query_prefix + t for t in ("worker hours", "tenant")],
               max_length=stage.query_length)
    p = {t: encode(stage.embedder, stage.tokenizer, [stage.settings.passage_prefix + t],
                   max_length=stage.passage_length)[0] for g in groups for t in g}
    expected = [[q[i] @ p[t] / 0.05 for t in group] for i, group in enumerate(groups)]
    np.testing.assert_allclose(scores.numpy(), np.array(expected), rtol=1e-4, atol=1e-4)
    assert len(teacher._passages) == 3  # each passage encoded once


def test_reranker_stage_trains_with_distillation(tmp_path, tiny_data, tiny_model,
                                                 finished_run, monkeypatch):
    from support.tiny_encoder import train_tiny_reranker

    from lexedge.trainer.reranker.family import RerankerFamily

    embedder_run, _ = finished_run
    calls = []
    original = RerankerFamily.teacher

    def counted(self):
        calls.append(1)
        return original(self)

    monkeypatch.setattr(RerankerFamily, "teacher", counted)
    summary, config = train_tiny_reranker(
        tiny_data, tiny_model, tmp_path / "run", "phases=1", "base_layers=1", 'head="mean"',
        "evaluation.candidates=8", f'teacher="{embedder_run / "stage2"}"',
        "stage1.distill_weight=0.5", "stage1.hard_negatives=2", "stage1.random_negatives=1")
    assert list(summary["metrics"]) == ["stage1"]
    assert len(calls) == config.stage1.steps  # the teacher scored every step's groups


def test_distillation_needs_a_teacher_and_a_reranker():
    from lexedge.trainer.config import TrainEmbedderConfig, TrainRerankerConfig
    from lexedge.trainer.config_loader import load_config

    base = ['data_dir="d"', 'output_dir="o"']
    with pytest.raises(LexedgeError, match="stage2.distill_weight = 0.5 needs a teacher"):
        load_config(TrainRerankerConfig, None, base + ["stage2.distill_weight=0.5"])
    with pytest.raises(LexedgeError, match="distillation trains a reranker"):
        load_config(TrainEmbedderConfig, None, base + ["stage1.distill_weight=0.5"])
    with pytest.raises(LexedgeError, match="distill_weight must be within"):
        load_config(TrainRerankerConfig, None, base + ['teacher="t"',
                                                       "stage1.distill_weight=2"])
