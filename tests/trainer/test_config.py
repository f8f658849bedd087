"""Configuration: a dataclass per command, read from TOML or YAML, overridable with --set."""

import pytest

from lexedge.runtime.errors import LexedgeError
from lexedge.trainer.config import TrainEmbedderConfig
from lexedge.trainer.config_loader import load_config

TOML = """
data_dir = "data"
output_dir = "out"
phases = ["1", "2"]
[stage2]
steps = 7
rank_window = [5, 50]
[lora]
r = 8
"""


def test_toml_file_sets_fields_and_keeps_each_sections_defaults(tmp_path):
    path = tmp_path / "train.toml"
    path.write_text(TOML, encoding="utf-8")
    config = load_config(TrainEmbedderConfig, path)
    assert config.phases == ["1", "2"]
    assert config.stage2.steps == 7 and config.stage2.rank_window == [5, 50]
    assert config.stage2.negative_source == "model"        # stage 2's own default survives
    assert config.stage3.negative_source == "model-refresh"
    assert config.lora.r == 8 and config.lora.alpha == 32


def test_yaml_file_and_set_overrides(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "train.yaml"
    path.write_text("data_dir: d\noutput_dir: o\nstage1:\n  weak_pairs: 3\n", encoding="utf-8")
    config = load_config(TrainEmbedderConfig, path, [
        "stage1.weak_pairs=5", "stage3.temperature=0.02", "phases=mlm,1", "runtime.bf16=false",
        'base_model="minilm"'])
    assert config.stage1.weak_pairs == 5
    assert config.stage3.temperature == 0.02
    assert config.phases == ["mlm", "1"]
    assert config.runtime.bf16 is False
    assert config.base_model == "minilm"


@pytest.mark.parametrize("override, message", [
    ("stage2.stepz=3", "unknown key stage2.stepz"),
    ("stage2.steps=many", "stage2.steps must be an integer"),
    ("phases=4", "unknown phase '4'"),
    ("stage1.rank_window=[9, 3]", "rank_window"),
    ("nonsense", "expected KEY=VALUE"),
])
def test_bad_settings_are_named(override, message):
    with pytest.raises(LexedgeError, match=message):
        load_config(TrainEmbedderConfig, None, ["data_dir=d", "output_dir=o", override])
