"""``lexedge train embedder --config FILE --set k=v --phases ...`` runs the curriculum."""

import json

from lexedge.cli import main
from support.tiny_encoder import tiny_config_overrides


def test_train_embedder_command(tiny_data, tiny_model, tmp_path, capsys):
    config = tmp_path / "train.toml"
    config.write_text('phases = ["1", "2", "3"]\n[stage1]\nsteps = 2\n', encoding="utf-8")
    output = tmp_path / "run"
    arguments = ["train", "embedder", "--config", str(config), "--phases", "1"]
    for item in tiny_config_overrides(tiny_data, tiny_model, output):
        if not item.startswith("stage1.steps"):
            arguments += ["--set", item]
    assert main(arguments) == 0
    assert (output / "stage1" / "lexedge_stage.json").is_file()
    assert not (output / "stage2").exists()
    saved = json.loads((output / "train_config.json").read_text())
    assert saved["phases"] == ["1"] and saved["stage1"]["steps"] == 2
    assert "stage1: recall@10" in capsys.readouterr().out
    # a second run into the same folder must say how to continue
    assert main(arguments) == 2
    assert main(arguments + ["--resume"]) == 0
