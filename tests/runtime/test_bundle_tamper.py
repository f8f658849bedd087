"""A bundle's manifest protects itself (issue 20, finding 7): its settings decide results as
much as the model files do, so an edit to them, or a model swapped together with its hash in
``files``, is refused at load with one line naming ``BUNDLE/manifest.json``."""

import hashlib
import json

import pytest

from lexedge.runtime.bundle import MANIFEST_HASH_FIELD, Bundle, manifest_sha256
from lexedge.runtime.errors import LexedgeError

pytest.importorskip("onnx")
from support.tiny_bundle import build_tiny_bundle  # noqa: E402  (needs onnx)

CHARACTERS = "abcdefgh 民法第九十条"


@pytest.fixture
def bundle(tmp_path):
    return build_tiny_bundle(tmp_path / "bundle", CHARACTERS, rerank_weight=0.5)


def read(folder):
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


def write(folder, manifest):
    (folder / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2),
                                          encoding="utf-8")


def refused(folder) -> str:
    with pytest.raises(LexedgeError) as caught:
        Bundle.load(folder)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{folder / 'manifest.json'}: ")
    assert "re-export" in message and "lexedge export" in message
    return message


def test_an_untouched_bundle_loads_and_carries_its_manifest_hash(bundle):
    manifest = read(bundle)
    assert manifest[MANIFEST_HASH_FIELD] == manifest_sha256(manifest)
    loaded = Bundle.load(bundle)
    assert loaded.manifest["reranker"]["rerank_weight"] == 0.5
    # Reformatting the file (indentation, key order) is not an edit of its content.
    write(bundle, dict(reversed(list(manifest.items()))))
    Bundle.load(bundle)


@pytest.mark.parametrize("section,setting,value", [("reranker", "max_length", 8),
                                                    ("embedder", "max_length", 512),
                                                    ("reranker", "rerank_weight", 1.0)])
def test_an_edited_setting_is_refused(bundle, section, setting, value):
    manifest = read(bundle)
    manifest[section][setting] = value
    write(bundle, manifest)
    assert "does not match its content" in refused(bundle)


def test_a_swapped_reranker_with_its_hash_updated_is_refused(bundle, tmp_path):
    other = build_tiny_bundle(tmp_path / "other", CHARACTERS, seed=7)
    (bundle / "reranker.onnx").write_bytes((other / "reranker.onnx").read_bytes())
    manifest = read(bundle)
    swapped = hashlib.sha256((bundle / "reranker.onnx").read_bytes()).hexdigest()
    assert swapped != manifest["files"]["reranker.onnx"]  # another model indeed
    manifest["files"]["reranker.onnx"] = swapped  # so the per-file check alone would pass
    write(bundle, manifest)
    assert "does not match its content" in refused(bundle)


def test_a_manifest_without_its_hash_is_refused(bundle):
    manifest = read(bundle)
    del manifest[MANIFEST_HASH_FIELD]
    write(bundle, manifest)
    assert f"no {MANIFEST_HASH_FIELD}" in refused(bundle)
