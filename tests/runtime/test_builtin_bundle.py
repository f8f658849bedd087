"""Issue 19, item 5: the built-in bundle. ``builtin`` names it wherever a bundle is taken, its
hashes are checked on load, an index records the name (not the install path), ``lexedge
bundle info`` describes any bundle, and the demo serves it with no export step and no torch."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lexedge.cli import main
from lexedge.runtime import builtin
from lexedge.runtime.bundle import Bundle
from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.index import Index
from support.tiny_bundle import build_tiny_bundle


@pytest.fixture
def tiny_builtin(tmp_path, monkeypatch, tiny_dataset):
    """A tiny bundle standing in for the shipped one."""
    from lexedge.runtime.datasets import iter_corpus

    characters = "".join(sorted({c for d in iter_corpus(tiny_dataset / "corpus.jsonl")
                                 for c in d.indexed_text}))
    folder = build_tiny_bundle(tmp_path / "site" / "builtin", characters)
    monkeypatch.setattr(builtin, "builtin_path", lambda: folder)
    return folder


def test_the_name_builtin_loads_the_shipped_bundle_and_an_index_records_the_name(
        tiny_builtin, tiny_dataset, tmp_path, capsys):
    assert Bundle.load("builtin").path == tiny_builtin
    assert main(["index", "build", "--docs", str(tiny_dataset), "--out", str(tmp_path / "i"),
                 "--bundle", "builtin"]) == 0
    manifest = json.loads((tmp_path / "i" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["bundle"]["path"] == "builtin"
    assert Index.load(tmp_path / "i").bundle.path == tiny_builtin
    assert main(["search", "損害賠償", "--index", str(tmp_path / "i"), "--bundle",
                 "builtin"]) == 0
    assert "1." in capsys.readouterr().out


def test_a_folder_called_builtin_is_reached_as_a_path(tiny_builtin, tmp_path, monkeypatch):
    other = build_tiny_bundle(tmp_path / "here" / "builtin", "abc", seed=5)
    monkeypatch.chdir(tmp_path / "here")
    assert Bundle.load("./builtin").sha256 != Bundle.load("builtin").sha256
    assert Bundle.load("./builtin").path.resolve() == other.resolve()


def test_a_damaged_builtin_is_refused_on_load(tiny_builtin):
    model = tiny_builtin / "embedder.onnx"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(LexedgeError, match="embedder.onnx: sha256 mismatch"):
        Bundle.load("builtin")


def test_an_install_without_the_builtin_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(builtin, "builtin_path", lambda: tmp_path / "absent")
    assert main(["bundle", "info", "builtin"]) == 2
    assert "installed without its built-in bundle" in capsys.readouterr().err


def test_bundle_info_describes_a_bundle(tiny_builtin, capsys):
    assert main(["bundle", "info", "builtin", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["path"] == str(tiny_builtin) and info["name"] == "builtin"
    on_disk = sum(p.stat().st_size for p in tiny_builtin.iterdir())
    assert info["bytes"] == on_disk
    assert set(info["models"]) == {"embedder", "reranker"}
    assert info["models"]["embedder"]["dimension"] == 16
    for key in ("languages", "training", "quality", "licences"):
        assert key in info
    assert main(["bundle", "info", str(tiny_builtin)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"builtin: {tiny_builtin}") and "embedder" in printed


def test_the_demo_serves_the_builtin_with_no_export(tiny_builtin, tmp_path, monkeypatch,
                                                    capsys):
    from lexedge.runtime import cli

    monkeypatch.setattr(cli, "BUNDLE_BUILDERS", {})  # nothing may be exported
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    manifest = json.loads((tmp_path / "demo" / "index" / "manifest.json").read_text("utf-8"))
    assert manifest["bundle"]["path"] == "builtin"
    assert not (tmp_path / "demo" / "bundle").exists()
    assert "dense" in capsys.readouterr().out


# -- the bundle shipped in this package ----------------------------------------------------------
def test_the_shipped_builtin_is_small_verified_and_loads_without_torch(tmp_path):
    """The real one: present, at most 40 MB, every hash checked, both languages served, and
    loading and embedding import neither torch nor transformers."""
    assert builtin.has_builtin(), f"no built-in bundle at {builtin.builtin_path()}"
    code = """
import json, sys
from lexedge.runtime.bundle import Bundle
from lexedge.runtime.builtin import describe
bundle = Bundle.load("builtin")
vectors = bundle.embedder().encode(["民法第九十条", "合同的解除条件"], kind="query")
scores = bundle.reranker().score("合同的解除条件", ["当事人协商一致，可以解除合同。", "民法第九十条"])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
print(json.dumps({"info": describe(bundle), "heavy": heavy, "shape": list(vectors.shape),
                  "scores": scores.tolist()}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=tmp_path)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert report["shape"][0] == 2
    # the late-interaction reranker (issue 19, item 3) re-scores through onnxruntime alone
    assert len(report["scores"]) == 2 and report["scores"][0] > report["scores"][1]
    info = report["info"]
    assert info["models"]["reranker"]["kind"] == "late_interaction"
    assert set(info["models"]["reranker"]["rerank_weight_by_analyzer"]) == {"zh", "ja"}
    assert info["bytes"] <= 40_000_000
    assert {"zh", "ja"} <= set(info["languages"])
    assert info["training"] and info["quality"] and info["licences"]
    card = Path(info["card"]).read_text(encoding="utf-8")  # hash-checked with the rest
    assert card.startswith("---\nlibrary_name: \"onnx\"\nlicense: \"apache-2.0\"")
    assert "multilingual-e5-small" in card and "| embedder.cosine_mean |" in card


def test_the_shipped_builtin_refuses_a_changed_file(tmp_path, monkeypatch):
    assert builtin.has_builtin()
    copy = shutil.copytree(builtin.builtin_path(), tmp_path / "builtin")
    monkeypatch.setattr(builtin, "builtin_path", lambda: copy)
    tokenizer = copy / "embedder.tokenizer.json"
    tokenizer.write_text(tokenizer.read_text(encoding="utf-8") + " ", encoding="utf-8")
    with pytest.raises(LexedgeError, match="embedder.tokenizer.json: sha256 mismatch"):
        Bundle.load("builtin")
