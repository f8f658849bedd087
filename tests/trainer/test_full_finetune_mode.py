"""``mode = "full"`` trains every weight of a small model and saves a whole model folder; a
LoRA stage can stack on it."""

import json

import pytest

from lexedge.trainer.curriculum import Curriculum
from lexedge.trainer.embedder.family import EmbedderFamily
from lexedge.trainer.lora import stage_chain


def test_full_stage_is_a_model_folder_and_lora_stacks_on_it(make_config, tmp_path):
    output = tmp_path / "run"
    config = make_config("phases=1,2", "stage1.mode=full", "stage1.steps=2", "stage2.steps=2",
                         output=output)
    summary = Curriculum(config, EmbedderFamily, log=lambda line: None).run()
    assert (output / "stage1" / "config.json").is_file()
    assert (output / "stage1" / "model.safetensors").is_file()
    assert not (output / "stage1" / "adapter_config.json").exists()
    manifest = json.loads((output / "stage1" / "lexedge_stage.json").read_text())
    assert manifest["mode"] == "full" and manifest["lora"] is None
    assert [p.name for p in stage_chain(output / "stage2")] == ["stage2", "stage1"]
    assert set(summary["metrics"]) == {"base", "stage1", "stage2"}


def test_a_fresh_head_trains_at_its_own_rate_in_a_full_fine_tune(tmp_path):
    """A reranker's classifier starts from noise; in a full fine-tune (no peft
    ``modules_to_save``) it is found by name and gets ``head_learning_rate``."""
    import torch

    from lexedge.trainer.training import TrainingPlan, run_training

    torch.manual_seed(0)
    module = torch.nn.ModuleDict({"encoder": torch.nn.Linear(4, 4),
                                  "classifier": torch.nn.Linear(4, 1)})
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    inputs = torch.randn(8, 4)
    plan = TrainingPlan(steps=1, steps_per_epoch=1, learning_rate=1e-3, warmup_ratio=0.0,
                        head_learning_rate=1e-2, head_modules=("classifier",),
                        progress=False, checkpoint_every=10)
    run_training(module, plan=plan, work_dir=tmp_path, resume=False,
                 epoch_batches=lambda epoch: [inputs],
                 compute_loss=lambda model, batch: model["classifier"](
                     torch.tanh(model["encoder"](batch))).pow(2).mean())
    step = {n: float((p.detach() - before[n]).abs().mean())
            for n, p in module.named_parameters()}
    # Adam's first step moves every parameter by about its learning rate
    assert step["classifier.weight"] == pytest.approx(1e-2, rel=0.05)
    assert step["encoder.weight"] == pytest.approx(1e-3, rel=0.05)
