"""Every manifest names what made it in one vocabulary (issue 18, item 3): an index and a
bundle carry the same ``provenance`` object, with the same keys and the same libraries, and
a file is hashed once however many manifests name it."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from datetime import datetime

import pytest

from lexedge import __version__
from lexedge.runtime import provenance as provenance_module
from lexedge.runtime.index import MANIFEST_FILE, Index
from lexedge.runtime.provenance import (LIBRARIES, PROVENANCE, PROVENANCE_KEYS, file_sha256,
                                        library_versions, provenance)

#: The keys every index and bundle manifest's provenance holds (``inputs`` is optional).
WRITTEN_KEYS = {"made_by", "created", "lexedge", "python", "libraries"}
#: The names the vocabulary replaced; no manifest may use them again.
RETIRED = ("lexedge_version", "libraries", "made_by", "created", "versions")


def manifest_of(folder) -> dict:
    return json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))


def assert_in_the_vocabulary(manifest: dict, made_by: str) -> dict:
    made = manifest[PROVENANCE]
    assert set(made) == WRITTEN_KEYS <= set(PROVENANCE_KEYS)
    assert made["made_by"] == made_by and made["lexedge"] == __version__
    assert datetime.fromisoformat(made["created"]).utcoffset().total_seconds() == 0
    assert list(made["libraries"]) == list(LIBRARIES)
    retired = [key for key in RETIRED if key in manifest or key in manifest.get("export", {})]
    assert not retired, f"old provenance names still written: {retired}"
    return made


def test_an_index_manifest_says_what_made_it(tiny_dataset, tmp_path):
    index = Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx", progress=False)
    made = assert_in_the_vocabulary(manifest_of(tmp_path / "idx"), "lexedge index build")
    assert made["libraries"]["numpy"] == importlib.metadata.version("numpy")
    # an update keeps the build's provenance, and the index still verifies
    index.remove(["d1"])
    assert manifest_of(tmp_path / "idx")[PROVENANCE] == made
    assert len(Index.load(tmp_path / "idx")) == 5


@pytest.fixture
def exported_bundle(tmp_path, tiny_dataset):
    """An FP32 bundle of a one-layer random BERT, written by ``lexedge export``'s code."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("onnx")
    from tokenizers import BertWordPieceTokenizer

    from lexedge.export.bundle import ExportConfig, export_bundle

    texts = [json.loads(line)["text"] for line in
             (tiny_dataset / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    tokenizer = BertWordPieceTokenizer(lowercase=True)
    tokenizer.train_from_iterator(texts, vocab_size=200, min_frequency=1)
    stage = tmp_path / "stage"
    stage.mkdir()
    torch.manual_seed(0)
    transformers.BertModel(transformers.BertConfig(
        vocab_size=tokenizer.get_vocab_size(), hidden_size=16, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64),
        add_pooling_layer=False).save_pretrained(stage)
    tokenizer.save(str(stage / "tokenizer.json"))
    (stage / "lexedge_model.json").write_text(json.dumps(
        {"pooling": "mean", "normalize": True, "query_prefix": "", "passage_prefix": "",
         "max_length": 48}), encoding="utf-8")
    return export_bundle(ExportConfig(out=tmp_path / "bundle", embedder=str(stage),
                                      precision="fp32", calibration=tiny_dataset, force=True),
                         log=lambda *_: None)


def test_an_index_and_its_bundle_name_the_same_facts_the_same_way(exported_bundle,
                                                                    tiny_dataset, tmp_path):
    Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx", bundle=exported_bundle,
                progress=False)
    bundle = assert_in_the_vocabulary(exported_bundle.manifest, "lexedge export")
    index = assert_in_the_vocabulary(manifest_of(tmp_path / "idx"), "lexedge index build")
    for same in ("lexedge", "python", "libraries"):
        assert bundle[same] == index[same]
    assert bundle["libraries"]["torch"] == importlib.metadata.version("torch")


def test_library_versions_name_every_package_asked_for():
    assert list(library_versions()) == list(LIBRARIES)
    assert library_versions(("numpy", "lexedge-no-such-package")) == {
        "numpy": importlib.metadata.version("numpy"), "lexedge-no-such-package": None}


def test_a_file_is_hashed_once_until_it_changes(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"id": "a", "text": "x"}\n', encoding="utf-8")
    hashed = []
    real = provenance_module.sha256_file
    monkeypatch.setattr(provenance_module, "sha256_file",
                        lambda path: hashed.append(path) or real(path))
    assert file_sha256(corpus) == hashlib.sha256(corpus.read_bytes()).hexdigest()
    assert file_sha256(str(corpus)) == file_sha256(corpus)
    assert len(hashed) == 1
    corpus.write_text('{"id": "a", "text": "changed"}\n', encoding="utf-8")
    assert file_sha256(corpus) == hashlib.sha256(corpus.read_bytes()).hexdigest()
    assert len(hashed) == 2


def test_inputs_are_named_by_their_hashes(tiny_dataset):
    made = provenance("lexedge test", inputs={"corpus.jsonl": tiny_dataset / "corpus.jsonl"})
    assert set(made) == set(PROVENANCE_KEYS)
    assert made["inputs"] == {"corpus.jsonl": hashlib.sha256(
        (tiny_dataset / "corpus.jsonl").read_bytes()).hexdigest()}
