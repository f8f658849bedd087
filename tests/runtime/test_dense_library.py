"""The HNSW library (issue 23): chroma-hnswlib, from wheels; a graph records the library that
wrote it, and a graph from another one (hnswlib 0.8 wrote every index before) is refused
with the command that rebuilds the index, never misread."""

import json

import pytest

from lexedge.runtime.bundle import Bundle
from lexedge.runtime.dense import PARAMS_FILE, DenseIndex, hnsw_library
from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.index import Index
from lexedge.runtime.storage import manifest_sha256


@pytest.fixture(autouse=True)
def graphs(monkeypatch):
    """Index builds write a graph, as they do above EXACT_LIMIT vectors."""
    monkeypatch.setattr("lexedge.runtime.dense.EXACT_LIMIT", 0)


def test_a_graph_records_its_library(tiny_dataset, tiny_bundle, tmp_path):
    index = Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx",
                        bundle=Bundle.load(tiny_bundle), progress=False)
    params = json.loads((index.path / "dense" / PARAMS_FILE).read_text())
    assert params["library"] == hnsw_library()
    assert hnsw_library().startswith("chroma-hnswlib ")


def test_a_graph_from_another_library_is_refused_with_the_rebuild_command(
        tiny_dataset, tiny_bundle, tmp_path):
    index = Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx",
                        bundle=Bundle.load(tiny_bundle), progress=False)
    # what an index of lexedge 0.1 holds: no library recorded (hnswlib 0.8 wrote it)
    params_path = index.path / "dense" / PARAMS_FILE
    params = json.loads(params_path.read_text())
    del params["library"]
    params_path.write_text(json.dumps(params))
    reseal(index.path)
    with pytest.raises(LexedgeError, match=r"hnsw\.bin: written by hnswlib 0\.8, which this "
                                           r"lexedge \(chroma-hnswlib .*\) cannot read; rebuild "
                                           r"the index: lexedge index build --docs .*corpus"
                                           r"\.jsonl --bundle .* --out .*idx"):
        Index.load(index.path)


def reseal(path):
    """Recompute the manifest's file hashes after a deliberate edit (the old format's files
    are genuine, only written by another library)."""
    from lexedge.runtime.storage import sha256_file

    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"] = {name: sha256_file(path / name) for name in manifest["files"]}
    manifest.pop("manifest_sha256", None)
    manifest["manifest_sha256"] = manifest_sha256(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2))


def test_a_graph_written_before_exact_search_existed_still_loads(tiny_dataset, tiny_bundle,
                                                                 tmp_path):
    index = Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx",
                        bundle=Bundle.load(tiny_bundle), progress=False)
    before = index.dense.search(index.dense.vectors([0]), k=3)
    # what every index holds from before exact search: a graph, its dense.json without "kind"
    params_path = index.path / "dense" / PARAMS_FILE
    params = json.loads(params_path.read_text())
    del params["kind"]
    params_path.write_text(json.dumps(params))
    reseal(index.path)
    reloaded = Index.load(index.path)
    assert isinstance(reloaded.dense, DenseIndex)
    after = reloaded.dense.search(reloaded.dense.vectors([0]), k=3)
    assert [a.tolist() for a in after] == [b.tolist() for b in before]
