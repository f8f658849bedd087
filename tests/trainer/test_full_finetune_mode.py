"""``mode = "full"`` trains every weight of a small model and saves a whole model folder; a
LoRA stage can stack on it."""

import json

from lexedge.trainer.curriculum import Curriculum
from lexedge.trainer.embedder import EmbedderFamily
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
