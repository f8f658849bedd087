"""Stage 3 re-encodes the corpus with the current model and re-mines before every epoch."""

from lexedge.trainer.curriculum import Curriculum
from lexedge.trainer.embedder.family import EmbedderFamily


def test_stage3_remines_negatives_each_epoch(make_config, monkeypatch):
    mined = []
    original = EmbedderFamily.attach_negatives

    def recording(self, examples, stage, *, model, model_key):
        stats = original(self, examples, stage, model=model, model_key=model_key)
        mined.append((stage.negative_source, model_key,
                      {(e.query, e.positive): tuple(e.negatives) for e in examples}))
        return stats

    monkeypatch.setattr(EmbedderFamily, "attach_negatives", recording)
    config = make_config("phases=1,3", "evaluation.enabled=false", "stage1.steps=2",
                         "stage3.epochs=3", "stage3.learning_rate=0.01",
                         "stage3.examples_per_epoch=0")  # every example, every epoch
    Curriculum(config, EmbedderFamily, log=lambda line: None).run()
    refresh = [m for m in mined if m[0] == "model-refresh"]
    assert len(refresh) == 3                          # one mining per epoch
    assert refresh[0][1] is not None                  # epoch 0: the stage-1 encoding
    assert refresh[1][1] is None and refresh[2][1] is None  # later: re-encoded now
    assert refresh[0][2].keys() == refresh[1][2].keys()
    assert refresh[0][2] != refresh[1][2]            # the model moved: new negatives


def test_stage3_remines_only_the_examples_each_epoch_samples(make_config, monkeypatch):
    """With ``examples_per_epoch``, every epoch mines exactly the examples its batches are
    drawn from (not the whole training set), and the epochs draw different ones."""
    mined, drawn = [], []
    original_mine, original_batches = EmbedderFamily.attach_negatives, EmbedderFamily.make_batches

    def recording_mine(self, examples, stage, *, model, model_key):
        if stage.negative_source == "model-refresh":
            mined.append({(e.query, e.positive) for e in examples})
        return original_mine(self, examples, stage, model=model, model_key=model_key)

    def recording_batches(self, examples, stage, rng, order):
        if stage.negative_source == "model-refresh":
            drawn.append({(examples[i].query, examples[i].positive) for i in order})
        return original_batches(self, examples, stage, rng, order)

    monkeypatch.setattr(EmbedderFamily, "attach_negatives", recording_mine)
    monkeypatch.setattr(EmbedderFamily, "make_batches", recording_batches)
    config = make_config("phases=1,3", "evaluation.enabled=false", "stage1.steps=2",
                         "stage3.epochs=2", "stage3.examples_per_epoch=8",
                         "stage3.batch_size=4")
    curriculum = Curriculum(config, EmbedderFamily, log=lambda line: None)
    total = len(curriculum.data.qrels_examples())
    curriculum.run()
    assert len(mined) == 2 and mined == drawn
    assert all(len(m) == 8 for m in mined) and total > 8
    assert mined[0] != mined[1]
