"""Stage 3 re-encodes the corpus with the current model and re-mines before every epoch."""

from lexedge.trainer.curriculum import Curriculum
from lexedge.trainer.embedder import EmbedderFamily


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
                         "stage3.epochs=3", "stage3.learning_rate=0.01")
    Curriculum(config, EmbedderFamily, log=lambda line: None).run()
    refresh = [m for m in mined if m[0] == "model-refresh"]
    assert len(refresh) == 3                          # one mining per epoch
    assert refresh[0][1] is not None                  # epoch 0: the stage-1 encoding
    assert refresh[1][1] is None and refresh[2][1] is None  # later: re-encoded now
    assert refresh[0][2].keys() == refresh[1][2].keys()
    assert refresh[0][2] != refresh[1][2]            # the model moved: new negatives
