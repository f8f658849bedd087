"""A run killed at any step and resumed with --resume ends with the same weights, bit for bit
on CPU, as a run that was never interrupted; checkpoints hold no pickle."""

import pytest
from safetensors.torch import load_file

from lexedge.trainer.curriculum import Curriculum
from lexedge.trainer.embedder.family import EmbedderFamily

OVERRIDES = ("phases=1,3", "evaluation.enabled=false", "stage1.steps=3",
             "stage3.epochs=2", "stage3.examples_per_epoch=12", "runtime.checkpoint_every=2")
STAGE1_STEPS, STAGE3_STEPS = 3, 6


class Killed(Exception):
    pass


def _kill_after(total_steps):
    calls = {"n": 0}

    def hook(step):
        calls["n"] += 1
        if calls["n"] == total_steps:
            raise Killed

    return hook


def _weights(folder):
    return load_file(str(folder / "adapter_model.safetensors"))


@pytest.mark.parametrize("kill_at", [STAGE1_STEPS + 3, STAGE1_STEPS + 5, 2])
def test_resume_gives_the_uninterrupted_weights(make_config, tmp_path, kill_at):
    reference = tmp_path / "reference"
    Curriculum(make_config(*OVERRIDES, output=reference), EmbedderFamily,
               log=lambda line: None).run()

    interrupted = tmp_path / "interrupted"
    config = make_config(*OVERRIDES, output=interrupted)
    with pytest.raises(Killed):
        Curriculum(config, EmbedderFamily, hooks=[_kill_after(kill_at)],
                   log=lambda line: None).run()
    work = interrupted / ".work"
    checkpoint = next(work.glob("*/checkpoint"))
    assert {p.suffix for p in checkpoint.iterdir()} <= {".safetensors", ".json"}
    Curriculum(config, EmbedderFamily, resume=True, log=lambda line: None).run()

    for stage in ("stage1", "stage3"):
        expected, actual = _weights(reference / stage), _weights(interrupted / stage)
        assert expected.keys() == actual.keys()
        for name in expected:
            assert (expected[name] == actual[name]).all(), f"{stage} {name}"


def test_same_seed_same_weights(make_config, tmp_path):
    runs = []
    for name in ("a", "b"):
        Curriculum(make_config("phases=1", "evaluation.enabled=false", "stage1.steps=3",
                               output=tmp_path / name), EmbedderFamily,
                   log=lambda line: None).run()
        runs.append(_weights(tmp_path / name / "stage1"))
    assert all((runs[0][k] == runs[1][k]).all() for k in runs[0])
