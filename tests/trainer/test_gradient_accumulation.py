"""Gradient accumulation (issue 21): ``accumulation`` batches add up before each optimizer
step, so two half batches train what one whole batch does when the loss is a mean."""

import torch

from lexedge.trainer.training import TrainingPlan, run_training


def _train(tmp_path, batches, accumulation, steps):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    calls = []

    def loss(module, batch):
        calls.append(len(batch[0]))
        inputs, targets = batch
        return torch.nn.functional.mse_loss(module(inputs).squeeze(-1), targets)

    plan = TrainingPlan(steps=steps, steps_per_epoch=steps, learning_rate=0.1,
                        warmup_ratio=0.0, progress=False, accumulation=accumulation)
    result = run_training(model, plan=plan, work_dir=tmp_path / f"w{accumulation}",
                          resume=False, epoch_batches=lambda epoch: batches,
                          compute_loss=loss, count=lambda batch: len(batch[0]))
    return model, result, calls


def test_two_half_batches_train_what_one_whole_batch_does(tmp_path):
    generator = torch.Generator().manual_seed(1)
    inputs, targets = torch.randn(12, 3, generator=generator), torch.randn(12, generator=generator)
    whole = [(inputs[i:i + 4], targets[i:i + 4]) for i in range(0, 12, 4)]
    halves = [(inputs[i:i + 2], targets[i:i + 2]) for i in range(0, 12, 2)]
    one, one_result, one_calls = _train(tmp_path, whole, 1, 3)
    two, two_result, two_calls = _train(tmp_path, halves, 2, 3)
    assert one_calls == [4, 4, 4] and two_calls == [2] * 6
    assert one_result.examples_first_epoch == two_result.examples_first_epoch == 12
    torch.testing.assert_close(one.weight, two.weight, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(one.bias, two.bias, atol=1e-6, rtol=1e-6)
    assert one_result.losses == two_result.losses or all(
        abs(a - b) < 1e-6 for a, b in zip(one_result.losses, two_result.losses))
