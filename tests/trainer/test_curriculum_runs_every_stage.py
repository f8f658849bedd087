"""Every phase runs and leaves a stage folder that loads on its own, with its manifest,
resolved config, metrics, and a recall-vs-budget plot for the run."""

import json
import shutil

import pytest
import torch

from lexedge.runtime.metrics import RECALL_CUTOFFS
from lexedge.trainer.lora import load_stage_backbone, stage_chain
from lexedge.trainer.stage import STAGE_MANIFEST

STAGES = ("mlm", "stage1", "stage2", "stage3")


def test_every_phase_produces_a_complete_stage_folder(finished_run):
    output, _ = finished_run
    for name in STAGES:
        folder = output / name
        manifest = json.loads((folder / STAGE_MANIFEST).read_text())
        assert manifest["stage"] == name
        assert set(manifest["provenance"]["inputs"]) >= {"corpus.jsonl", "queries.jsonl",
                                                         "qrels/train.tsv"}
        assert manifest["seed"] == 7 and manifest["provenance"]["libraries"]["torch"]
        assert (folder / "train_config.json").is_file()
        assert (folder / "metrics.json").is_file()
        assert (folder / "tokenizer.json").is_file()
    for name in ("stage1", "stage2", "stage3"):
        assert (output / name / "adapter_model.safetensors").is_file()
        assert not list((output / name).glob("*.bin"))
    assert [p.name for p in stage_chain(output / "stage3")] == \
        ["stage3", "stage2", "stage1", "mlm"]
    assert not (output / ".work" / "stage3").exists()  # checkpoints are removed once done


def test_each_stage_is_measured_at_every_budget(finished_run):
    output, summary = finished_run
    assert list(summary["metrics"]) == ["base", *STAGES]
    for metrics in summary["metrics"].values():
        for k in RECALL_CUTOFFS:
            assert 0.0 <= metrics[f"recall@{k}"] <= 1.0
        assert {"mrr@10", "ndcg@10", "queries"} <= set(metrics)
    assert (output / "recall_vs_budget.png").read_bytes()[:4] == b"\x89PNG"
    assert (output / "curriculum.json").is_file()


def test_negative_sources_follow_the_curriculum(finished_run):
    output, _ = finished_run
    sources = [json.loads((output / n / STAGE_MANIFEST).read_text())["mining"][0]["source"]
               for n in ("stage1", "stage2", "stage3")]
    assert sources == ["bm25", "model", "model-refresh"]
    stage2 = json.loads((output / "stage2" / STAGE_MANIFEST).read_text())["mining"][0]
    assert stage2["window"] == [2, 20]
    for line in (output / "stage2" / "hard_negatives.jsonl").read_text().splitlines():
        example = json.loads(line)
        assert not set(example["negatives"]) & set(example["judged"])


def test_a_moved_run_folder_still_loads(finished_run, tmp_path):
    output, _ = finished_run
    moved = tmp_path / "moved"
    shutil.copytree(output, moved)
    original, _ = load_stage_backbone(output / "stage3")
    relocated, chain = load_stage_backbone(moved / "stage3")
    assert chain[-1] == (moved / "mlm").resolve()
    ids = torch.tensor([[2, 8, 9, 10, 3]])
    with torch.no_grad():
        assert torch.equal(original(input_ids=ids).last_hidden_state,
                           relocated(input_ids=ids).last_hidden_state)


def test_existing_run_needs_resume(finished_run, make_config):
    from lexedge.runtime.errors import LexedgeError
    from lexedge.trainer.curriculum import Curriculum
    from lexedge.trainer.embedder.family import EmbedderFamily

    output, _ = finished_run
    with pytest.raises(LexedgeError, match="--resume"):
        Curriculum(make_config(output=output), EmbedderFamily)
