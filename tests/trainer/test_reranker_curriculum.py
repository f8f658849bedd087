"""The reranker goes through the embedder's three stages: every stage leaves a stage folder
with its head saved, stage 2 trains on the embedder's candidates, stage 3 re-mines with the
reranker itself every epoch, and the merged stack scores like the unmerged one."""

import json

import pytest
import torch

from lexedge.runtime.errors import LexedgeError
from lexedge.trainer.lora import load_stage_backbone, stage_chain
from lexedge.trainer.mining import streaming_top_k
from lexedge.trainer.stage import STAGE_MANIFEST


def test_every_stage_is_saved_evaluated_and_stacked(reranker_run):
    output, summary, _ = reranker_run
    assert list(summary["metrics"]) == ["stage1", "stage2", "stage3"]  # no fresh-head base
    for name in ("stage1", "stage2", "stage3"):
        manifest = json.loads((output / name / STAGE_MANIFEST).read_text())
        assert manifest["family"] == "reranker"
        adapter = json.loads((output / name / "adapter_config.json").read_text())
        assert adapter["task_type"] == "SEQ_CLS"
        assert {"classifier", "pooler"} <= set(adapter["modules_to_save"])
        metrics = summary["metrics"][name]
        assert metrics["method"] == "rerank" and metrics["rerank"] == 8
        assert metrics["timing"]["rerank_pairs"] == 8 * metrics["queries"]
    assert [p.name for p in stage_chain(output / "stage3")] == \
        ["stage3", "stage2", "stage1", "base-1layers"]
    base = json.loads((output / "base-1layers" / "config.json").read_text())
    assert base["num_hidden_layers"] == 1


def _embedder_windows(embedder_stage, data_dir, lines: list[dict], depth: int) -> list:
    """The embedder's top ``depth`` for each mined example, recomputed independently."""
    from lexedge.trainer.backbone import load_tokenizer
    from lexedge.trainer.data import TrainingData
    from lexedge.trainer.embedder.model import Embedder, encode
    from lexedge.trainer.stage import EncoderSettings

    backbone, chain = load_stage_backbone(embedder_stage)
    embedder = Embedder(backbone, EncoderSettings.read(chain)).eval()
    tokenizer = load_tokenizer(chain)
    settings = embedder.settings
    data = TrainingData.load(data_dir, "train")
    corpus = encode(embedder, tokenizer, [settings.passage_prefix + data.passage(d)
                                          for d in data.documents], max_length=32)
    queries = encode(embedder, tokenizer, [settings.query_prefix + e["query"] for e in lines],
                     max_length=16)
    _, indices = streaming_top_k(queries, corpus, depth)
    return [[data.doc_ids[i] for i in row] for row in indices]


def _mined(folder) -> list[dict]:
    return [json.loads(x) for x in (folder / "hard_negatives.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("stage, depth", [("stage2", 30 + 2), ("stage3", 12 + 2)])
def test_negatives_are_the_embedders_candidates(reranker_run, tiny_data, stage, depth):
    """Recompute the embedder's top ranks independently and check every negative is in its
    window (stage 3: the last epoch's, drawn from a different sample of examples than the
    first epoch's), and none is judged."""
    output, _, embedder_run = reranker_run
    lines = _mined(output / stage)
    checked = 0
    for example, window in zip(lines, _embedder_windows(embedder_run / "stage2", tiny_data,
                                                        lines, depth)):
        for negative in example["negatives"]:
            assert negative in window
            assert negative not in example["judged"]
            checked += 1
    assert checked > 0


def test_stage3_takes_the_rerankers_top_among_the_embedders_candidates(
        tmp_path, tiny_data, tiny_model, finished_run, monkeypatch):
    """``stage3.candidates = 12`` with ``rank_window = [0, 3]``: the reranker re-orders the
    embedder's top 12 and its own top 3 are the negatives, so they lie in the embedder's top
    12 but not all in its top 3 (the window alone would have cut the embedder's list at 3).
    Stage 2's deeper pass serves stage 3: the embedder runs once."""
    from support.tiny_encoder import train_tiny_reranker
    from lexedge.trainer.reranker.family import RerankerFamily

    depths = []
    original = RerankerFamily._first_stage

    def recording(self, examples, depth):
        depths.append(depth)
        return original(self, examples, depth)

    monkeypatch.setattr(RerankerFamily, "_first_stage", recording)
    embedder_stage = finished_run[0] / "stage2"
    train_tiny_reranker(
        tiny_data, tiny_model, tmp_path / "run", "phases=2,3", "base_layers=1",
        "evaluation.enabled=false", f'embedder="{embedder_stage}"',
        "stage2.hard_negatives=2", "stage2.rank_window=[0, 30]", "stage3.epochs=1",
        "stage3.candidates=12", "stage3.rank_window=[0, 3]", "stage3.hard_negatives=3",
        "stage3.false_negative_margin=-1000", "stage3.batch_size=4",
        "stage3.max_query_length=16", "stage3.max_passage_length=32")
    assert depths == [30]
    lines = [e for e in _mined(tmp_path / "run" / "stage3") if e["negatives"]]
    windows = _embedder_windows(embedder_stage, tiny_data, lines, 12 + 2)
    negatives = [(n, window) for e, window in zip(lines, windows) for n in e["negatives"]]
    assert negatives and all(n in window for n, window in negatives)
    assert any(n not in window[:3 + 2] for n, window in negatives)


@pytest.mark.parametrize("setting, message", [
    ("stage2.candidates=12", "model-refresh stage only"),
    ("stage3.candidates=2", "at least rank_window's end"),
])
def test_candidates_setting_is_checked(setting, message):
    from lexedge.trainer.config import TrainRerankerConfig
    from lexedge.trainer.config_loader import load_config

    with pytest.raises(LexedgeError, match=message):
        load_config(TrainRerankerConfig, None, ['data_dir="d"', 'output_dir="o"', setting,
                                                "stage3.rank_window=[0, 5]"])


def test_stage3_remines_from_the_reranker_each_epoch(reranker_run):
    output, _, _ = reranker_run
    mining = json.loads((output / "stage3" / STAGE_MANIFEST).read_text())["mining"]
    assert [m["source"] for m in mining] == ["model-refresh", "model-refresh"]
    assert [m.get("epoch") for m in mining] == [0, 1]


def test_merged_reranker_scores_like_the_adapter_stack(reranker_run):
    """Merging is exact in float32: the stage folder loaded onto its base by stock peft
    (unmerged: the whole stack is one adapter) and the merged model give the same logits."""
    from peft import PeftModel

    from lexedge.trainer.reranker.model import load_cross_encoder

    output, _, _ = reranker_run
    merged, chain = load_stage_backbone(output / "stage3", loader=load_cross_encoder)
    stacked = PeftModel.from_pretrained(load_cross_encoder(chain[-1]), str(chain[0]))
    ids = torch.tensor([[2, 10, 11, 3, 12, 13, 14, 3]])
    mask = torch.ones_like(ids)
    merged.eval(), stacked.eval()
    with torch.no_grad():
        a = merged(input_ids=ids, attention_mask=mask).logits
        b = stacked(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(a, b, atol=1e-5)


def test_reranker_config_refuses_mlm(tmp_path):
    from lexedge.trainer.config import TrainRerankerConfig
    from lexedge.trainer.config_loader import load_config

    with pytest.raises(LexedgeError, match="no mlm phase"):
        load_config(TrainRerankerConfig, None, ['data_dir="d"', 'output_dir="o"',
                                                "phases=mlm,1"])


def test_eval_cli_reranks_the_first_stage_candidates(reranker_run, tiny_data, tmp_path):
    """``lexedge eval --method rerank``: the top N are re-ordered, the rest keep the first
    stage's order, so Recall@N is the first stage's."""
    from lexedge.cli import main

    output, _, embedder_run = reranker_run
    first, reranked = tmp_path / "first.json", tmp_path / "reranked.json"
    assert main(["eval", str(tiny_data), "--method", "dense", "--model",
                 str(embedder_run / "stage2"), "--metrics-out", str(first)]) == 0
    assert main(["eval", str(tiny_data), "--method", "rerank", "--model",
                 str(output / "stage3"), "--first-stage", str(embedder_run / "stage2"),
                 "--rerank", "5", "--metrics-out", str(reranked)]) == 0
    first, reranked = json.loads(first.read_text()), json.loads(reranked.read_text())
    assert reranked["rerank"] == 5 and reranked["first_stage"] == str(embedder_run / "stage2")
    assert reranked["recall@5"] == pytest.approx(first["recall@5"])
    assert reranked["recall@20"] == pytest.approx(first["recall@20"])
    assert main(["eval", str(tiny_data), "--method", "rerank"]) == 2  # no --model


def test_stage3_epochs_share_one_pass_of_the_embedder(tmp_path, tiny_data, tiny_model,
                                                      finished_run, monkeypatch):
    """Each stage-3 epoch mines its own draw, but the embedder's candidates are computed once,
    for every example the stage can draw, and looked up after that."""
    from support.tiny_encoder import train_tiny_reranker
    from lexedge.trainer.reranker.family import RerankerFamily

    passes = []
    original = RerankerFamily._first_stage

    def counting(self, examples, depth):
        passes.append(len(examples))
        return original(self, examples, depth)

    monkeypatch.setattr(RerankerFamily, "_first_stage", counting)
    summary, _ = train_tiny_reranker(
        tiny_data, tiny_model, tmp_path / "run", "phases=1,3", "base_layers=1",
        "evaluation.enabled=false", f'embedder="{finished_run[0] / "stage2"}"',
        "stage1.hard_negatives=2", "stage1.random_negatives=1", "stage3.epochs=3",
        "stage3.examples_per_epoch=8", "stage3.rank_window=[0, 12]",
        "stage3.hard_negatives=3", "stage3.batch_size=4", "stage3.max_query_length=16",
        "stage3.max_passage_length=32")
    mining = json.loads((tmp_path / "run" / "stage3" / STAGE_MANIFEST).read_text())["mining"]
    assert [m["examples"] for m in mining] == [8, 8, 8]  # three epochs, each its own draw
    mined = _mined(tmp_path / "run" / "stage3")  # what the last epoch trained on
    assert len(mined) == 8 and all(e["negatives"] for e in mined)
    assert len(passes) == 1 and passes[0] > 8
