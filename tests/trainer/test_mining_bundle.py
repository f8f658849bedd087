"""A ``model`` stage may mine its negatives with an exported bundle (``mining_bundle``):
onnxruntime's encoding of the corpus instead of the torch model being trained, so a 12-layer
teacher trained on CPU borrows the small built-in's fast mining. The negatives are recomputed
here from the bundle's own vectors, independently of the trainer, and compared."""

from __future__ import annotations

import pytest

from lexedge.runtime.bundle import Bundle
from lexedge.runtime.errors import LexedgeError
from lexedge.trainer.curriculum import Curriculum
from lexedge.trainer.data import TrainingData, read_examples
from lexedge.trainer.embedder.family import EmbedderFamily
from lexedge.trainer.stage import hard_negatives_path
from support.tiny_bundle import build_tiny_bundle

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def tiny_data_bundle(tmp_path_factory, tiny_data):
    characters = "".join(path.read_text(encoding="utf-8")
                         for path in (tiny_data / "corpus.jsonl", tiny_data / "queries.jsonl"))
    return build_tiny_bundle(tmp_path_factory.mktemp("miner") / "bundle", characters,
                             reranker=False, dimension=16, seed=3)


def bundle_negatives(bundle, data: TrainingData, example, stage) -> list[str]:
    """Ranks ``rank_window`` of the bundle's exact ranking, judged articles left out, those
    scoring at least the positive's score minus the margin dropped."""
    embedder = Bundle.load(bundle).embedder()
    corpus = embedder.encode([data.passage(d) for d in data.doc_ids], kind="passage")
    query = embedder.encode([example.query], kind="query")[0]
    scores = dict(zip(data.doc_ids, (corpus @ query).tolist()))
    ranking = sorted(scores, key=lambda d: -scores[d])
    first, last = stage.rank_window
    threshold = scores[example.positive] - stage.false_negative_margin
    window = [d for d in ranking[first:last] if d not in example.judged]
    return [d for d in window if scores[d] < threshold][:stage.negatives_pool]


def assert_mined_by_the_bundle(bundle, config, run) -> list:
    """Every example of ``run``'s stage 2 took the bundle's negatives (but for a float
    near-tie at most); returns the examples."""
    data = TrainingData.load(config.data_dir, config.train_split)
    examples = read_examples(hard_negatives_path(run / "stage2"))
    assert examples
    same = sum(e.negatives == bundle_negatives(bundle, data, e, config.stage2)
               for e in examples)
    assert same >= len(examples) - 1, (
        f"only {same} of {len(examples)} examples took the bundle's negatives")
    return examples


def test_a_model_stage_mines_with_the_bundle_it_names(make_config, tiny_data_bundle,
                                                        tmp_path):
    config = make_config("phases=2", "stage2.steps=1",
                         f'stage2.mining_bundle="{tiny_data_bundle}"',
                         output=tmp_path / "run")
    Curriculum(config, EmbedderFamily, log=lambda line: None).run()
    examples = assert_mined_by_the_bundle(tiny_data_bundle, config, tmp_path / "run")
    # the model being trained would have mined others: the check above tells them apart
    unmined = make_config("phases=2", "stage2.steps=1", output=tmp_path / "own")
    Curriculum(unmined, EmbedderFamily, log=lambda line: None).run()
    own = read_examples(hard_negatives_path(tmp_path / "own" / "stage2"))
    assert sum(a.negatives == b.negatives for a, b in zip(examples, own)) < len(examples) - 1


@pytest.mark.parametrize("stage, source", [("stage1", "bm25"), ("stage3", "model-refresh")])
def test_mining_bundle_is_refused_outside_a_model_stage(make_config, tiny_data_bundle,
                                                          stage, source):
    with pytest.raises(LexedgeError, match=f"{stage}.mining_bundle"):
        make_config(f'{stage}.mining_bundle="{tiny_data_bundle}"',
                    f'{stage}.negative_source="{source}"')


def test_a_mining_bundle_that_is_not_a_bundle_is_refused_before_training(make_config,
                                                                         tmp_path):
    with pytest.raises(LexedgeError, match="stage2.mining_bundle: .* not a bundle folder"):
        make_config(f'stage2.mining_bundle="{tmp_path / "nowhere"}"')


def test_a_reranker_mines_and_is_evaluated_with_the_bundle_it_names(tiny_data, tiny_model,
                                                                     tiny_data_bundle,
                                                                     tmp_path):
    """``embedder`` may name a bundle: the reranker's stage-2 negatives are then the bundle's
    candidates (recomputed here from its own vectors), and its evaluation re-ranks the
    bundle's served dense ranking."""
    from support.tiny_encoder import train_tiny_reranker

    summary, config = train_tiny_reranker(
        tiny_data, tiny_model, tmp_path / "run", "phases=2", "base_layers=1",
        f'embedder="{tiny_data_bundle}"', "stage2.steps=1", "stage2.hard_negatives=2",
        "stage2.rank_window=[0, 4]", "stage2.false_negative_margin=-1000",
        "evaluation.candidates=4")
    assert_mined_by_the_bundle(tiny_data_bundle, config, tmp_path / "run")
    metrics = summary["metrics"]["stage2"]
    assert metrics["first_stage"] == str(tiny_data_bundle)
    assert metrics["bundle"]["sha256"] == Bundle.load(tiny_data_bundle).sha256
