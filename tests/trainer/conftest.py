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
    from lexedge.trainer.config import TrainEmbedderConfig
    from lexedge.trainer.config_loader import load_config

    def make(*overrides, output=None):
        output = output or tmp_path / "run"
        return load_config(TrainEmbedderConfig, None,
                           tiny_config_overrides(tiny_data, tiny_model, output) + list(overrides))

    return make


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, tiny_data, tiny_model):
    """Every phase (mlm, 1, 2, 3) of the tiny run, evaluated on dev."""
    from lexedge.trainer.config import TrainEmbedderConfig
    from lexedge.trainer.config_loader import load_config
    from lexedge.trainer.curriculum import Curriculum
    from lexedge.trainer.embedder.family import EmbedderFamily

    output = tmp_path_factory.mktemp("finished") / "run"
    config = load_config(TrainEmbedderConfig, None,
                         tiny_config_overrides(tiny_data, tiny_model, output)
                         + ["phases=mlm,1,2,3"])
    summary = Curriculum(config, EmbedderFamily, log=lambda line: None).run()
    return output, summary


@pytest.fixture(scope="session")
def reranker_run(tmp_path_factory, tiny_data, tiny_model, finished_run):
    """Every stage of a tiny reranker (first layer of the tiny BERT only) whose stage 2 and 3
    candidates come from the finished embedder run's stage 2."""
    from lexedge.trainer.config import TrainRerankerConfig
    from lexedge.trainer.config_loader import load_config
    from lexedge.trainer.curriculum import Curriculum
    from lexedge.trainer.reranker.family import RerankerFamily

    embedder_run, _ = finished_run
    output = tmp_path_factory.mktemp("reranker") / "run"
    overrides = [o for o in tiny_config_overrides(tiny_data, tiny_model, output)
                 if not o.startswith(("mlm.", "stage3.rank_window"))]
    config = load_config(TrainRerankerConfig, None, overrides + [
        f'embedder="{embedder_run / "stage2"}"', "base_layers=1", "evaluation.candidates=8",
        "stage1.hard_negatives=2", "stage1.random_negatives=1", "stage2.hard_negatives=3",
        "stage3.hard_negatives=3", "stage3.rank_window=[0, 12]"])
    summary = Curriculum(config, RerankerFamily, log=lambda line: None).run()
    return output, summary, embedder_run
