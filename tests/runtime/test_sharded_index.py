"""An index built from vectors encoded apart (issue 21): ``lexedge index encode --shard I/N``
on several processes, then ``index build --vectors``, gives the index one build gives."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lexedge.cli import main
from lexedge.runtime.bundle import Bundle
from lexedge.runtime.index import Index
from lexedge.runtime.searcher import Searcher

QUERIES = ["本人の同意なしに個人データを第三者へ提供できますか", "他人の権利を侵害した場合の損害賠償責任",
           "労働時間の上限", "著作物を複製する権利"]


def _encode(tiny_dataset, tiny_bundle, out, shard, *extra):
    return main(["index", "encode", "--docs", str(tiny_dataset), "--bundle", str(tiny_bundle),
                 "--shard", shard, "--out", str(out), *extra])


def _vectors(index):
    return np.stack([index.dense.graph.get_items([row])[0] for row in range(len(index))])


@pytest.fixture
def single(tiny_dataset, tiny_bundle, tmp_path):
    return Index.build(tiny_dataset, tmp_path / "single", bundle=Bundle.load(tiny_bundle),
                       progress=False)


def test_a_build_from_shards_equals_the_single_build(tiny_dataset, tiny_bundle, tmp_path,
                                                     single, capsys):
    shards = [tmp_path / f"shard{i}" for i in range(3)]
    assert _encode(tiny_dataset, tiny_bundle, shards[0], "0/3") == 0
    # another process, as on another machine
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for i in (1, 2):
        subprocess.run([sys.executable, "-m", "lexedge", "index", "encode", "--docs",
                        str(tiny_dataset), "--bundle", str(tiny_bundle), "--shard", f"{i}/3",
                        "--out", str(shards[i])], check=True, env=env, capture_output=True)
    sizes = [json.loads((s / "manifest.json").read_text())["documents"] for s in shards]
    assert sizes == [2, 2, 2]
    capsys.readouterr()
    assert main(["index", "build", "--docs", str(tiny_dataset), "--bundle", str(tiny_bundle),
                 "--vectors", *map(str, shards), "--out", str(tmp_path / "merged"),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["vectors"]["imported"] == 6 and report["vectors"]["embedded"] == 0
    merged = Index.load(tmp_path / "merged")
    assert [merged.docs.get(r) for r in range(len(merged))] == \
        [single.docs.get(r) for r in range(len(single))]
    np.testing.assert_allclose(_vectors(merged), _vectors(single), atol=1e-6)
    for name in sorted(p.name for p in (tmp_path / "single" / "bm25").iterdir()):
        assert (tmp_path / "merged" / "bm25" / name).read_bytes() == \
            (tmp_path / "single" / "bm25" / name).read_bytes()
    for query in QUERIES:
        assert Searcher(merged).search(query, rerank=0).hits == \
            Searcher(single).search(query, rerank=0).hits


def test_a_changed_document_or_a_missing_shard_is_embedded_by_the_build(
        tiny_dataset, tiny_bundle, tmp_path, single, capsys):
    shard = tmp_path / "shard0"
    assert _encode(tiny_dataset, tiny_bundle, shard, "0/2") == 0
    corpus = tiny_dataset / "corpus.jsonl"
    records = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines()]
    records[0]["text"] += "（改正）"  # d1 is in shard 0: its vector there is stale now
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                      encoding="utf-8")
    capsys.readouterr()
    assert main(["index", "build", "--docs", str(tiny_dataset), "--bundle", str(tiny_bundle),
                 "--vectors", str(shard), "--out", str(tmp_path / "merged"), "--json"]) == 0
    vectors = json.loads(capsys.readouterr().out)["vectors"]
    assert vectors["imported"] == 2 and vectors["embedded"] == 4
    fresh = Index.build(tiny_dataset, tmp_path / "fresh", bundle=Bundle.load(tiny_bundle),
                        progress=False)
    np.testing.assert_allclose(_vectors(Index.load(tmp_path / "merged")), _vectors(fresh),
                               atol=1e-6)


def test_shards_of_another_bundle_or_split_are_refused(tiny_dataset, tiny_bundle, tmp_path,
                                                      capsys):
    from support.tiny_bundle import build_tiny_bundle

    other = build_tiny_bundle(tmp_path / "other", (tiny_dataset / "corpus.jsonl").read_text(
        encoding="utf-8") + (tiny_dataset / "queries.jsonl").read_text(encoding="utf-8"),
        seed=5)
    assert _encode(tiny_dataset, other, tmp_path / "theirs", "0/2") == 0
    assert _encode(tiny_dataset, tiny_bundle, tmp_path / "a", "0/2") == 0
    assert _encode(tiny_dataset, tiny_bundle, tmp_path / "b", "1/3") == 0
    capsys.readouterr()
    for shards, message in (([tmp_path / "theirs"], "encoded with another embedder"),
                            ([tmp_path / "a", tmp_path / "b"], "another split"),
                            ([tmp_path / "nothing"], "not a vector shard")):
        assert main(["index", "build", "--docs", str(tiny_dataset), "--bundle",
                     str(tiny_bundle), "--vectors", *map(str, shards), "--out",
                     str(tmp_path / "out")]) == 2
        error = capsys.readouterr().err.strip()
        assert message in error and len(error.splitlines()) == 1
        assert not (tmp_path / "out").exists()


def test_an_unavailable_provider_is_named_with_those_there_are(tiny_dataset, tiny_bundle,
                                                               tmp_path, capsys):
    assert _encode(tiny_dataset, tiny_bundle, tmp_path / "s", "0/1",
                   "--providers", "cpu") == 0
    assert _encode(tiny_dataset, tiny_bundle, tmp_path / "t", "0/1",
                   "--providers", "nosuchthing") == 2
    error = capsys.readouterr().err
    assert "'nosuchthing' is not available in this onnxruntime (available:" in error
    assert "cpu" in error and not (tmp_path / "t").exists()
