"""Fixtures for the trainer tests: a tiny BEIR folder, a tiny random BERT over its words, and
one finished run of every phase, shared by the tests that only inspect it."""

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

pytest.importorskip("torch")
pytest.importorskip("peft")

from support.tiny_encoder import (build_tiny_dataset, build_tiny_encoder,  # noqa: E402
                                  tiny_config_overrides)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    return build_tiny_dataset(tmp_path_factory.mktemp("tiny_beir"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tiny_data):
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny_bert"), tiny_data)


@pytest.fixture
def make_config(tmp_path, tiny_data, tiny_model):
    """``make_config(*overrides, output=...)`` → a TrainEmbedderConfig for the tiny run."""
    from lexedge.trainer.config import TrainEmbedderConfig, load_config

    def make(*overrides, output=None):
        output = output or tmp_path / "run"
        return load_config(TrainEmbedderConfig, None,
                           tiny_config_overrides(tiny_data, tiny_model, output) + list(overrides))

    return make


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, tiny_data, tiny_model):
    """Every phase (mlm, 1, 2, 3) of the tiny run, evaluated on dev."""
    from lexedge.trainer.config import TrainEmbedderConfig, load_config
    from lexedge.trainer.curriculum import Curriculum
    from lexedge.trainer.embedder import EmbedderFamily

    output = tmp_path_factory.mktemp("finished") / "run"
    config = load_config(TrainEmbedderConfig, None,
                         tiny_config_overrides(tiny_data, tiny_model, output)
                         + ["phases=mlm,1,2,3"])
    summary = Curriculum(config, EmbedderFamily, log=lambda line: None).run()
    return output, summary
