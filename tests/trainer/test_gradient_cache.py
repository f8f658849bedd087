"""The cached contrastive loss (GradCache, issue 21): chunk by chunk, the gradient of the
uncached loss, dropout included (each chunk's random state is replayed)."""

import json

import pytest
import torch

from lexedge.trainer.backbone import load_backbone
from lexedge.trainer.data import Example
from lexedge.trainer.embedder.family import EmbedderFamily
from lexedge.trainer.embedder.model import Embedder
from lexedge.trainer.stage import EncoderSettings
from support.tiny_encoder import tiny_config_overrides


@pytest.fixture
def family_and_batch(tiny_data, tiny_model, tmp_path):
    from lexedge.trainer.config import TrainEmbedderConfig
    from lexedge.trainer.config_loader import load_config
    from lexedge.trainer.data import TrainingData

    def make(chunk: int):
        config = load_config(TrainEmbedderConfig, None, tiny_config_overrides(
            tiny_data, tiny_model, tmp_path / "run") + [f"runtime.gradient_cache_chunk={chunk}"])
        data = TrainingData.load(config.data_dir, config.train_split)
        family = EmbedderFamily(config, data, torch.device("cpu"))
        family.wrap(load_backbone(tiny_model), [tiny_model])
        examples = data.qrels_examples()[:4]
        negatives = [[d for d in data.doc_ids if d not in e.judged][:2] for e in examples]
        batch = {"examples": examples, "negatives": negatives, "kind": examples[0].kind,
                 "shard": (0, 1)}
        return family, batch, config.stage1

    return make


def _gradients(family, batch, stage, chunk, train):
    family.runtime.gradient_cache_chunk = chunk
    torch.manual_seed(3)
    module = Embedder(load_backbone(family.config.base_model), family.settings)
    module.train(train)
    torch.manual_seed(0)
    loss = family.compute_loss(module, batch, stage)
    if chunk == 0:
        loss.backward()
    grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    return float(loss), grads, torch.get_rng_state()


def _assert_same(found, expected):
    assert found.keys() == expected.keys() and expected
    for name in expected:
        torch.testing.assert_close(found[name], expected[name], atol=1e-5, rtol=1e-4)


def test_the_cache_replays_dropout_and_gives_the_uncached_gradient(family_and_batch,
                                                                   tiny_model):
    config = json.loads((tiny_model / "config.json").read_text())
    assert config["hidden_dropout_prob"] > 0  # dropout is on: replaying it is what is tested
    family, batch, stage = family_and_batch(0)
    value, expected, state = _gradients(family, batch, stage, 0, train=True)
    # chunks as large as the batch draw the dropout masks the uncached forward draws
    cached, found, cached_state = _gradients(family, batch, stage, 100, train=True)
    assert abs(cached - value) < 1e-6
    _assert_same(found, expected)
    assert torch.equal(state, cached_state)  # the random stream goes on as uncached


@pytest.mark.parametrize("chunk", [1, 3])
def test_small_chunks_give_the_uncached_gradient(family_and_batch, chunk):
    family, batch, stage = family_and_batch(0)  # no dropout: other chunks, other masks
    value, expected, _ = _gradients(family, batch, stage, 0, train=False)
    cached, found, _ = _gradients(family, batch, stage, chunk, train=False)
    assert abs(cached - value) < 1e-6
    _assert_same(found, expected)


def test_accumulation_and_the_cache_are_not_both_taken(tiny_data, tiny_model, tmp_path):
    from lexedge.runtime.errors import LexedgeError
    from lexedge.trainer.config import TrainEmbedderConfig
    from lexedge.trainer.config_loader import load_config

    with pytest.raises(LexedgeError, match="choose one"):
        load_config(TrainEmbedderConfig, None, tiny_config_overrides(
            tiny_data, tiny_model, tmp_path / "run") + ["runtime.gradient_cache_chunk=2",
                                                        "runtime.accumulation=2"])
