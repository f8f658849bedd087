"""Issue 19, the student embedder: a student cut from chosen teacher layers, distilled, scores
closer to its teacher than it started (vectors and the score distribution over candidates)."""

import json

import numpy as np
import pytest

from lexedge.runtime.datasets import BeirDataset
from lexedge.runtime.errors import LexedgeError
from lexedge.trainer.student import (DistillSettings, Triple, agreement, distill,
                                     distillation_loss, make_student, teacher_vectors)
from support.tiny_encoder import build_tiny_encoder

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tiny_data):
    return build_tiny_encoder(tmp_path_factory.mktemp("teacher"), tiny_data, seed=3, layers=4)


def _texts(tiny_data):
    dataset = BeirDataset(tiny_data)
    documents = {doc.id: doc.indexed_text for doc in dataset.corpus()}
    queries = dataset.queries()
    qrels = dataset.qrels("train", query_ids=queries, doc_ids=documents)
    ids = sorted(documents)
    triples = [Triple(queries[q], documents[d], documents[ids[(ids.index(d) + 7) % len(ids)]])
               for q in sorted(qrels) for d in sorted(qrels[q])]
    return triples, [documents[i] for i in ids]


def test_make_student_keeps_the_chosen_teacher_layers(teacher, tmp_path):
    from transformers import AutoModel

    student = make_student(teacher, tmp_path / "student", [0, 3])
    teacher_model = AutoModel.from_pretrained(str(teacher))
    student_model = AutoModel.from_pretrained(str(student))
    assert student_model.config.num_hidden_layers == 2
    for mine, theirs in ((0, 0), (1, 3)):
        assert torch.equal(student_model.encoder.layer[mine].attention.self.query.weight,
                           teacher_model.encoder.layer[theirs].attention.self.query.weight)
    assert torch.equal(student_model.embeddings.word_embeddings.weight,
                       teacher_model.embeddings.word_embeddings.weight)
    recorded = json.loads((student / "lexedge_model.json").read_text(encoding="utf-8"))
    assert recorded["derived_from"]["teacher_layers"] == [0, 3]
    assert (student / "tokenizer.json").is_file()
    with pytest.raises(LexedgeError, match="layers 0..3"):
        make_student(teacher, tmp_path / "bad", [4])


def test_narrowing_drops_the_units_that_add_nothing(teacher, tiny_data, tmp_path):
    """Units whose output columns are zero add nothing to the residual stream: narrowing by
    exactly their number must drop them (and only them), so the student's vectors equal the
    teacher's."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoModel

    _, passages = _texts(tiny_data)
    muted = tmp_path / "muted"
    make_student(teacher, muted, [0, 1, 2, 3])
    weights = load_file(str(muted / "model.safetensors"))
    full = AutoModel.from_pretrained(str(teacher)).config.intermediate_size
    dead = {layer: torch.randperm(full, generator=torch.Generator().manual_seed(layer))[:full // 4]
            for layer in range(4)}
    for layer, units in dead.items():
        weights[f"encoder.layer.{layer}.output.dense.weight"][:, units] = 0.0
    save_file(weights, str(muted / "model.safetensors"))

    width = full - full // 4
    student = make_student(muted, tmp_path / "narrow", [0, 1, 2, 3], ffn_width=width,
                           calibration=passages[:40], calibration_length=32)
    model = AutoModel.from_pretrained(str(student))
    assert model.config.intermediate_size == width
    assert model.encoder.layer[2].intermediate.dense.weight.shape == (width, 32)
    recorded = json.loads((student / "lexedge_model.json").read_text(encoding="utf-8"))
    assert recorded["derived_from"]["ffn"]["importance_kept"] == [1.0] * 4
    held = passages[40:60]
    vectors = [teacher_vectors(folder, held[:2], held, query_length=16, passage_length=32,
                               progress=False)[1] for folder in (muted, student)]
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-5)
    with pytest.raises(LexedgeError, match="ffn width"):
        make_student(muted, tmp_path / "wide", [0], ffn_width=full, calibration=passages[:4])


def test_distilled_student_moves_toward_the_teacher(teacher, tiny_data, tmp_path):
    triples, passages = _texts(tiny_data)
    # A student far from the teacher (another random start): random tiny encoders give
    # nearly constant vectors, so a cut of the teacher would start too close to measure.
    init = build_tiny_encoder(tmp_path / "init", tiny_data, seed=11, layers=1)
    held_q = [t.query for t in triples[:8]]
    held_p = passages[:24]
    teacher_q, teacher_p = teacher_vectors(teacher, held_q, held_p, query_length=16,
                                           passage_length=32, progress=False)
    before = agreement(init, teacher_q, teacher_p, held_q, held_p, query_length=16,
                       passage_length=32)
    settings = DistillSettings(layers=(0,), epochs=6, batch_size=4, passages_per_batch=4,
                               learning_rate=3e-3, query_length=16, passage_length=32,
                               threads=1)
    stats = distill(init, teacher, triples, passages, tmp_path / "student", settings,
                    progress=False)
    after = agreement(tmp_path / "student", teacher_q, teacher_p, held_q, held_p,
                      query_length=16, passage_length=32)
    assert before["cosine"] < 0.5 and after["cosine"] > 0.9
    assert after["score_kl"] < before["score_kl"] / 2
    assert stats["epochs"][-1]["loss"] < stats["epochs"][0]["loss"]
    written = json.loads((tmp_path / "student" / "distillation.json").read_text("utf-8"))
    assert written["triples"] == len(triples)


def test_distillation_loss_terms():
    teacher_q = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    teacher_p = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    settings = DistillSettings(layers=(0,))
    same = distillation_loss(teacher_q, teacher_p, teacher_q, teacher_p, torch.arange(3),
                             settings)
    assert float(same["embedding"]) == pytest.approx(0.0, abs=1e-7)
    assert float(same["score"]) == pytest.approx(0.0, abs=1e-6)
    other = distillation_loss(teacher_q.flip(0), teacher_p, teacher_q, teacher_p,
                              torch.arange(3), settings)
    assert float(other["score"]) > 0.01
    only_embedding = distillation_loss(teacher_q.flip(0), teacher_p, teacher_q, teacher_p,
                                       torch.arange(3), DistillSettings(
                                           layers=(0,), score_weight=0, contrastive_weight=0))
    assert float(only_embedding["loss"]) == pytest.approx(float(other["embedding"]))
    with pytest.raises(LexedgeError, match="distinct"):
        DistillSettings(layers=(1, 1)).validate()
    assert np.isfinite(float(other["contrastive"]))


def test_train_student_command_writes_a_model_folder_export_can_take(teacher, tiny_data,
                                                                     tmp_path, capsys):
    from lexedge.cli import main
    from lexedge.trainer.stage import read_model_settings

    out = tmp_path / "student"
    assert main(["train", "student", "--teacher", str(teacher), "--layers", "0,3", "--data",
                 str(tiny_data), "--passages", str(tiny_data), "--per-corpus", "8",
                 "--epochs", "1", "--batch-size", "4", "--passage-length", "32",
                 "--ffn-width", "48", "--out", str(out)]) == 0
    assert "2 layers from teacher layers [0, 3]" in capsys.readouterr().out
    settings = read_model_settings(out)
    assert settings["max_length"] == 32 and settings["derived_from"]["teacher_layers"] == [0, 3]
    assert settings["derived_from"]["ffn"]["width"] == 48
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))[
        "intermediate_size"] == 48
    stats = json.loads((out / "distillation.json").read_text(encoding="utf-8"))
    assert stats["plain_passages"] == 8 and stats["triples"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student"]  # the cut is removed
    assert main(["train", "student", "--layers", "0,x", "--data", str(tiny_data),
                 "--out", str(tmp_path / "s2")]) == 2
    assert "--layers 0,x" in capsys.readouterr().err


def test_triples_from_a_stage_s_mined_negatives(tiny_data, tmp_path):
    from lexedge.trainer.student import triples_from_negatives

    documents = {doc.id: doc.indexed_text for doc in BeirDataset(tiny_data).corpus()}
    ids = sorted(documents)
    mined = tmp_path / "hard_negatives.jsonl"
    rows = [{"query": "q one", "query_id": "a", "positive": ids[0], "negatives": ids[1:4]},
            {"query": "q two", "query_id": "b", "positive": ids[4], "negatives": [ids[5]]},
            {"query": "q three", "query_id": "c", "positive": ids[6], "negatives": []}]
    mined.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    triples, info = triples_from_negatives(mined, tiny_data, per_row=2, seed=3)
    assert [t.query for t in triples] == ["q one", "q one", "q two"]
    assert {t.positive for t in triples[:2]} == {documents[ids[0]]}
    assert {t.negative for t in triples[:2]} < {documents[i] for i in ids[1:4]}
    assert len({t.negative for t in triples[:2]}) == 2  # drawn without replacement
    assert triples[2].negative == documents[ids[5]]
    assert info["queries"] == 3 and info["triples"] == 3
    mined.write_text(json.dumps({**rows[0], "positive": "nope"}) + "\n", encoding="utf-8")
    with pytest.raises(LexedgeError, match=r"hard_negatives.jsonl:1: not a hard-negative row"):
        triples_from_negatives(mined, tiny_data)


def test_export_records_the_whole_chain_of_a_derived_model(teacher, tmp_path):
    """A bundle made from a student of a student names every model it came from: the
    manifest's source nests each ``derived_from`` model's own record (weights' sha256)."""
    from lexedge.export.merge import load_merged
    from lexedge.runtime.storage import sha256_file

    first = make_student(teacher, tmp_path / "first", [0, 3])
    second = make_student(first, tmp_path / "second", [1])
    source = load_merged(second, "embedder").source
    assert source["derived_from"]["teacher_layers"] == [1]
    parent = source["derived_from"]["source"]
    assert parent["path"] == str(first)
    assert parent["sha256"]["model.safetensors"] == sha256_file(first / "model.safetensors")
    assert parent["derived_from"]["teacher_layers"] == [0, 3]
    assert parent["derived_from"]["source"]["path"] == str(teacher)


def test_a_trained_stage_distilled_further_keeps_its_chain(teacher, tiny_data, finished_run,
                                                           tmp_path):
    """Distilling a curriculum stage (an adapter over its base) again, from a new teacher,
    gives a whole model whose record goes through that stage, not around it."""
    from lexedge.export.merge import load_merged

    output, _ = finished_run
    triples, passages = _texts(tiny_data)
    settings = DistillSettings(layers=(0,), epochs=1, batch_size=4, passages_per_batch=4,
                               query_length=16, passage_length=32, threads=1)
    distill(output / "stage3", teacher, triples, passages, tmp_path / "again", settings,
            progress=False)
    source = load_merged(tmp_path / "again", "embedder").source
    assert source["derived_from"]["teacher"] == str(teacher)
    assert source["derived_from"]["distilled"] is True
    assert source["derived_from"]["source"]["path"] == str(output / "stage3")
    assert source["derived_from"]["source"]["stage"] == "stage3"


def test_a_distilled_student_distilled_again_names_it_and_the_new_teacher(teacher, tiny_data,
                                                                          tmp_path):
    """A second round (the shipped built-in's): the student distilled before is the start of
    the new one, so the record names it and the round's own teacher, and the chain goes on
    through the first round's record."""
    from lexedge.export.merge import load_merged

    triples, passages = _texts(tiny_data)
    settings = DistillSettings(layers=(0,), epochs=1, batch_size=4, passages_per_batch=4,
                               query_length=16, passage_length=32, threads=1)
    make_student(teacher, tmp_path / "cut", [0])
    distill(tmp_path / "cut", teacher, triples, passages, tmp_path / "round1", settings,
            progress=False)
    second_teacher = build_tiny_encoder(tmp_path / "teacher2", tiny_data, seed=5)
    distill(tmp_path / "round1", second_teacher, triples, passages, tmp_path / "round2",
            settings, progress=False)
    derived = load_merged(tmp_path / "round2", "embedder").source["derived_from"]
    assert derived["path"] == str(tmp_path / "round1")
    assert derived["teacher"] == str(second_teacher)
    assert derived["source"]["derived_from"]["path"] == str(teacher)
