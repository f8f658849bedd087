"""Phase 0 trains on masked text: about ``mlm.mask_probability`` of the tokens that are neither
padding nor special are predicted, and of those BERT's 80 % become the mask token, 10 % a
random token and 10 % stay (Devlin et al., 2019). A phase that masked nothing would still
run, lower its loss and save a model, so these tests look at the batches themselves
(issue 18, item 5)."""

import numpy as np
import pytest

from lexedge.trainer import mlm
from lexedge.trainer.curriculum import Curriculum
from lexedge.trainer.embedder.family import EmbedderFamily
from lexedge.trainer.mlm import mask_tokens

VOCABULARY, MASK_ID, SPECIAL_IDS = 1000, 4, (0, 1, 2, 3, 4)


def synthetic_batch(rows=256, width=64, seed=0):
    """Token ids with [CLS] … [SEP] and right padding of random lengths."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(len(SPECIAL_IDS), VOCABULARY, size=(rows, width))
    lengths = rng.integers(8, width + 1, size=rows)
    attention = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
    ids[:, 0] = 2
    ids[np.arange(rows), lengths - 1] = 3
    ids[attention == 0] = 0
    return ids, attention


@pytest.mark.parametrize("probability", [0.15, 0.4])
def test_mlm_masks_about_the_configured_fraction_of_tokens(probability):
    ids, attention = synthetic_batch()
    special = np.isin(ids, SPECIAL_IDS)
    inputs, labels = mask_tokens(ids, attention, special, VOCABULARY, MASK_ID, probability,
                                 np.random.default_rng(1))
    candidates = (attention == 1) & ~special
    predicted = labels != -100
    assert not (predicted & ~candidates).any(), "padding or a special token was predicted"
    share = predicted.sum() / candidates.sum()
    assert share == pytest.approx(probability, abs=0.02), \
        f"{share:.3f} of the tokens predicted, mask_probability is {probability}"
    assert (labels[predicted] == ids[predicted]).all()
    assert (inputs[~predicted] == ids[~predicted]).all()
    # 80 % mask, 10 % random, 10 % kept (a random draw may hit the original: rarely here)
    masked = (inputs[predicted] == MASK_ID).mean()
    kept = (inputs[predicted] == ids[predicted]).mean()
    shares = f"mask token {masked:.3f}, kept {kept:.3f}, random {1 - masked - kept:.3f}"
    assert masked == pytest.approx(0.8, abs=0.03), shares
    assert kept == pytest.approx(0.1, abs=0.03), shares
    assert 1.0 - masked - kept == pytest.approx(0.1, abs=0.03), shares


def test_mlm_phase_trains_on_batches_masked_at_the_configured_fraction(make_config,
                                                                        tiny_model,
                                                                        monkeypatch):
    from transformers import AutoTokenizer

    probability = 0.3
    trained = []
    real_run_training = mlm.run_training

    def recording(module, *, epoch_batches, **arguments):
        def recorded(epoch):
            batches = epoch_batches(epoch)
            trained.extend(batches)
            return batches

        return real_run_training(module, epoch_batches=recorded, **arguments)

    monkeypatch.setattr(mlm, "run_training", recording)
    config = make_config("phases=mlm", "evaluation.enabled=false", "mlm.steps=2",
                         f"mlm.mask_probability={probability}")
    Curriculum(config, EmbedderFamily, log=lambda line: None).run()

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    inputs = np.concatenate([b["input_ids"].numpy().ravel() for b in trained])
    labels = np.concatenate([b["labels"].numpy().ravel() for b in trained])
    attention = np.concatenate([b["attention_mask"].numpy().ravel() for b in trained])
    predicted = labels != -100
    original = np.where(predicted, labels, inputs)
    candidates = (attention == 1) & ~np.isin(original, tokenizer.all_special_ids)
    assert candidates.sum() > 500  # enough tokens for the shares below to mean something
    share = predicted.sum() / candidates.sum()
    assert share == pytest.approx(probability, abs=0.06), \
        f"the MLM phase predicted {share:.3f} of the tokens; mask_probability={probability}"
    hidden = (inputs[predicted] != labels[predicted]).mean()
    assert hidden == pytest.approx(0.9, abs=0.08), \
        f"only {hidden:.2f} of the predicted tokens were hidden from the model (BERT: 0.9)"
    masked = (inputs[predicted] == tokenizer.mask_token_id).mean()
    assert masked == pytest.approx(0.8, abs=0.1), \
        f"{masked:.2f} of the predicted tokens became the mask token (BERT: 0.8)"
