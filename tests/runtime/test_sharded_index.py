"""An index built from vectors encoded apart (issue 21): ``lexedge index encode --shard I/N``
on several processes, then ``index build --vectors``, gives the index one build gives — with
the shipped INT8 bundle, whose vectors depend on the batch a text shares, so the shards must
batch as the build does (whole chunks)."""

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lexedge.cli import main
from lexedge.runtime import builtin
from lexedge.runtime.bundle import Bundle
from lexedge.runtime.index import Index
from lexedge.runtime.searcher import Searcher

QUERIES = ["本人の同意なしに個人データを第三者へ提供できますか", "他人の権利を侵害した場合の損害賠償責任",
           "労働時間の上限", "著作物を複製する権利"]
CHUNK = 16  # documents the build embeds at a time (1,024 in use): 5 chunks here


def _encode(docs, bundle, out, shard, *extra):
    return main(["index", "encode", "--docs", str(docs), "--bundle", str(bundle),
                 "--shard", shard, "--out", str(out), *extra])


def _vectors(index):
    return index.dense.vectors(range(len(index)))


@pytest.fixture
def sample(tmp_path, monkeypatch):
    """70 articles of the sample shipped with lexedge, embedded CHUNK at a time."""
    monkeypatch.setattr("lexedge.runtime.index.EMBED_CHUNK", CHUNK)
    source = builtin.builtin_path().parent / "samples" / "ja_statutes_sample.jsonl.gz"
    with gzip.open(source, "rt", encoding="utf-8") as handle:
        lines = [line for _, line in zip(range(70), handle)]
    path = tmp_path / "sample" / "corpus.jsonl"
    path.parent.mkdir()
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def single(sample, tmp_path):
    return Index.build(sample, tmp_path / "single", bundle=Bundle.load("builtin"),
                       progress=False)


def test_a_build_from_shards_equals_the_single_build(sample, tmp_path, single, capsys):
    shards = [tmp_path / f"shard{i}" for i in range(3)]
    assert _encode(sample, "builtin", shards[0], "0/3") == 0
    # the others in other processes, as on other machines
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for i in (1, 2):
        code = ("import sys, lexedge.runtime.index as index; "
                f"index.EMBED_CHUNK = {CHUNK}; from lexedge.cli import main; "
                "sys.exit(main(sys.argv[1:]))")
        subprocess.run([sys.executable, "-c", code, "index", "encode", "--docs", str(sample),
                        "--bundle", "builtin", "--shard", f"{i}/3", "--out", str(shards[i])],
                       check=True, env=env, capture_output=True)
    sizes = [json.loads((s / "manifest.json").read_text())["documents"] for s in shards]
    assert sizes == [2 * CHUNK, CHUNK + 70 - 4 * CHUNK, CHUNK]  # chunks 0,3 / 1,4 / 2
    capsys.readouterr()
    assert main(["index", "build", "--docs", str(sample), "--bundle", "builtin",
                 "--vectors", *map(str, shards), "--out", str(tmp_path / "merged"),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["vectors"]["imported"] == 70 and report["vectors"]["embedded"] == 0
    merged = Index.load(tmp_path / "merged")
    assert [merged.docs.get(r) for r in range(len(merged))] == \
        [single.docs.get(r) for r in range(len(single))]
    np.testing.assert_array_equal(_vectors(merged), _vectors(single))
    for name in sorted(p.name for p in (tmp_path / "single" / "bm25").iterdir()):
        assert (tmp_path / "merged" / "bm25" / name).read_bytes() == \
            (tmp_path / "single" / "bm25" / name).read_bytes()
    for query in QUERIES:
        assert Searcher(merged).search(query, rerank=0).hits == \
            Searcher(single).search(query, rerank=0).hits


def test_a_changed_document_or_a_missing_shard_is_embedded_by_the_build(sample, tmp_path,
                                                                         capsys):
    shard = tmp_path / "shard0"
    assert _encode(sample, "builtin", shard, "0/2") == 0  # chunks 0, 2, 4: 38 documents
    records = [json.loads(line) for line in sample.read_text(encoding="utf-8").splitlines()]
    records[0]["text"] += "（改正）"  # in shard 0: its vector there is stale now
    sample.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                      encoding="utf-8")
    capsys.readouterr()
    assert main(["index", "build", "--docs", str(sample), "--bundle", "builtin",
                 "--vectors", str(shard), "--out", str(tmp_path / "merged"), "--json"]) == 0
    vectors = json.loads(capsys.readouterr().out)["vectors"]
    assert vectors["imported"] == 37 and vectors["embedded"] == 33
    merged = Index.load(tmp_path / "merged")
    fresh = Index.build(sample, tmp_path / "fresh", bundle=Bundle.load("builtin"),
                        progress=False)
    # the stale one was embedded again (alone in its batch now: INT8 rounds it a little
    # differently from a whole chunk); the others are the shard's vectors, imported as they
    # are (the changed text moved its chunk mates into other batches of the single build,
    # which rounds them a little differently too)
    changed = merged.row_of(records[0]["id"])
    assert np.dot(_vectors(merged)[changed], _vectors(fresh)[changed]) > 0.999
    rows = [merged.row_of(json.loads(line)["id"]) for line in
            (shard / "ids.jsonl").read_text().splitlines()[1:]]
    np.testing.assert_array_equal(_vectors(merged)[rows], np.load(shard / "vectors.npy")[1:])
    assert (np.sum(_vectors(merged)[rows] * _vectors(fresh)[rows], axis=1) > 0.999).all()


def test_shards_of_another_bundle_split_or_chunking_are_refused(tiny_dataset, tiny_bundle,
                                                                tmp_path, capsys, monkeypatch):
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
    monkeypatch.setattr("lexedge.runtime.index.EMBED_CHUNK", 2)  # another lexedge's chunks
    assert main(["index", "build", "--docs", str(tiny_dataset), "--bundle", str(tiny_bundle),
                 "--vectors", str(tmp_path / "a"), "--out", str(tmp_path / "out")]) == 2
    assert "encoded in chunks of 1024 documents" in capsys.readouterr().err
    assert main(["index", "build", "--docs", str(tiny_dataset), "--vectors",
                 str(tmp_path / "a"), "--out", str(tmp_path / "out")]) == 2
    assert "--vectors needs the --bundle" in capsys.readouterr().err


def test_an_unavailable_provider_is_named_with_those_there_are(tiny_dataset, tiny_bundle,
                                                               tmp_path, capsys):
    assert _encode(tiny_dataset, tiny_bundle, tmp_path / "s", "0/1",
                   "--providers", "cpu") == 0
    capsys.readouterr()
    assert _encode(tiny_dataset, tiny_bundle, tmp_path / "t", "0/1",
                   "--providers", "nosuchthing") == 2
    error = capsys.readouterr().err
    assert error.startswith("lexedge: error: --providers: nosuchthing is not in this "
                            "onnxruntime build; it has ")
    assert "CPUExecutionProvider" in error and not (tmp_path / "t").exists()
    assert len(error.strip().splitlines()) == 1


@pytest.mark.parametrize("shard, message", [
    ("-1/2", "-1/2: expected 0 <= I < N"),  # argparse alone: "expected one argument"
    ("2/2", "2/2: expected 0 <= I < N"),
    ("a/b", "a/b: expected I/N")])
def test_a_bad_shard_is_one_line_naming_it(tmp_path, capsys, shard, message):
    with pytest.raises(SystemExit) as stopped:
        _encode(tmp_path / "docs.jsonl", "builtin", tmp_path / "out", shard)
    err = capsys.readouterr().err
    assert stopped.value.code == 2
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
