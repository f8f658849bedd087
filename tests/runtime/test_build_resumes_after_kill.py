"""A killed index build (SIGKILL: no cleanup runs) resumes from the chunks it had embedded, and
leaves nothing behind once a later build completes (issue 6; "long jobs resume after being
killed")."""

import os
import subprocess
import sys
import textwrap

import pytest

from lexedge.runtime.bundle import Bundle
from lexedge.runtime.index import Index
from lexedge.runtime.searcher import Searcher
from lexedge.runtime.storage import MARKER_FILE, atomic_directory

KILLED_BUILD = textwrap.dedent("""
    import os, signal, sys
    import lexedge.runtime.index as index
    from lexedge.runtime.bundle import Bundle
    from lexedge.runtime.onnx_models import OnnxEmbedder

    index.EMBED_CHUNK = 2
    encode = OnnxEmbedder.encode
    calls = []

    def encode_then_die(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # two chunks embedded and saved; die in the third
            os.kill(os.getpid(), signal.SIGKILL)
        return encode(self, *args, **kwargs)

    OnnxEmbedder.encode = encode_then_die
    index.Index.build(sys.argv[1], sys.argv[2], bundle=Bundle.load(sys.argv[3]),
                      progress=False)
""")


def ranking(index, query):
    return [(h.id, round(h.score, 5)) for h in
            Searcher(index).search(query, rerank=0, budget=6, top=6).hits]


def test_killed_build_resumes_from_its_embedded_chunks(tiny_dataset, tiny_bundle, tmp_path,
                                                       monkeypatch):
    corpus, out = tiny_dataset / "corpus.jsonl", tmp_path / "idx"
    killed = subprocess.run([sys.executable, "-c", KILLED_BUILD, str(corpus), str(out),
                             str(tiny_bundle)], env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert killed.returncode == -9
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".idx.tmp-")]

    monkeypatch.setattr("lexedge.runtime.index.EMBED_CHUNK", 2)
    resumed = Index.build(corpus, out, bundle=Bundle.load(tiny_bundle), progress=False)
    assert resumed.manifest["vectors"] == {"embedded": 2, "reused": 0, "resumed": 4}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "idx", "tiny"]

    fresh = Index.build(corpus, tmp_path / "fresh", bundle=Bundle.load(tiny_bundle),
                        progress=False)
    for query in ("損害賠償", "労働時間", "著作権"):
        assert ranking(resumed, query) == ranking(fresh, query)


def test_a_changed_document_is_not_taken_from_a_killed_builds_chunks(tiny_dataset, tiny_bundle,
                                                                     tmp_path, monkeypatch):
    corpus, out = tiny_dataset / "corpus.jsonl", tmp_path / "idx"
    subprocess.run([sys.executable, "-c", KILLED_BUILD, str(corpus), str(out), str(tiny_bundle)],
                   env=dict(os.environ, HF_HUB_OFFLINE="1"))
    changed = tmp_path / "changed.jsonl"
    changed.write_text(corpus.read_text(encoding="utf-8").replace("無効とする", "有効とする"),
                       encoding="utf-8")  # d1, in the first saved chunk
    monkeypatch.setattr("lexedge.runtime.index.EMBED_CHUNK", 2)
    built = Index.build(changed, out, bundle=Bundle.load(tiny_bundle), progress=False)
    assert built.manifest["vectors"] == {"embedded": 4, "reused": 0, "resumed": 2}


def test_abandoned_temporary_folders_are_removed_by_the_next_writer(tmp_path):
    """Under the writer lock no other writer can be running, so whatever staging folders are
    left (this version's names or an older one's) are abandoned and go."""
    destination = tmp_path / "idx"
    abandoned = [tmp_path / ".idx.tmp-12345", tmp_path / ".idx.tmp-999-0a1b2c3d"]
    for folder in abandoned:
        folder.mkdir()
    with atomic_directory(destination) as staging:
        (staging / "manifest.json").write_text("{}")
    assert not any(folder.exists() for folder in abandoned)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


def test_a_writer_killed_between_its_renames_is_completed(tmp_path):
    destination = tmp_path / "idx"
    old, ready = tmp_path / ".idx.old-77-0a1b2c3d", tmp_path / ".idx.ready-77-0a1b2c3d"
    for folder, content in ((old, "old"), (ready, "new")):
        folder.mkdir()
        (folder / "which").write_text(content)
        (folder / MARKER_FILE).write_text('{"kind": "artefact"}')
    with pytest.raises(RuntimeError):
        with atomic_directory(destination):
            raise RuntimeError("this writer fails: only the recovery is left")
    assert (destination / "which").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]
