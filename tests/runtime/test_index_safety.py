"""Issue 20: an index write never destroys a user's files, never loses a concurrent change,
survives a kill at any point, is durable, and a damaged or edited index is refused by name."""

import json
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from lexedge.cli import main
from lexedge.runtime import storage
from lexedge.runtime.datasets import Document
from lexedge.runtime.dense import DenseIndex, build_dense
from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.index import Index
from lexedge.runtime.searcher import Searcher

ENV = dict(os.environ, HF_HUB_OFFLINE="1")


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                    encoding="utf-8")
    return path


def lexedge(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lexedge", *map(str, args)],
                          capture_output=True, text=True, env=env or ENV, timeout=120)


def one_line_error(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lexedge: error: "), result.stderr
    return lines[0]


# -- finding 1: --out never replaces what lexedge did not make ---------------------------------

def test_out_refuses_a_users_folder_and_keeps_it_whole(tiny_dataset, tmp_path, capsys):
    userdir = tmp_path / "userdir"
    (userdir / "important").mkdir(parents=True)
    (userdir / "important" / "thesis.txt").write_text("precious")
    assert main(["index", "build", "--docs", str(tiny_dataset / "corpus.jsonl"),
                 "--out", str(userdir)]) == 2
    assert "not a lexedge index" in capsys.readouterr().err
    assert (userdir / "important" / "thesis.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny", "userdir"]


def test_out_refuses_the_documents_own_folder(tmp_path, capsys):
    docs = tmp_path / "userdocs"
    docs.mkdir()
    (docs / "contract.txt").write_text("第一条 この契約は、甲乙間の売買に関する。\n" * 3)
    assert main(["index", "build", "--docs", str(docs), "--out", str(docs)]) == 2
    assert (docs / "contract.txt").is_file() and sorted(os.listdir(docs)) == ["contract.txt"]


def test_out_refuses_a_file_and_leaves_it_in_place(tiny_dataset, tmp_path):
    target = tmp_path / "some.jsonl"
    target.write_text("mine\n")
    error = one_line_error(lexedge("index", "build", "--docs", tiny_dataset / "corpus.jsonl",
                                   "--out", target))
    assert "some.jsonl: exists and is a file" in error
    assert target.read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["some.jsonl", "tiny"]


def test_out_replaces_an_empty_folder_or_its_own_index(tiny_dataset, tmp_path):
    out = tmp_path / "idx"
    out.mkdir()
    Index.build(tiny_dataset / "corpus.jsonl", out, progress=False)
    rebuilt = Index.build(tiny_dataset / "corpus.jsonl", out, progress=False)
    assert len(rebuilt) == 6


def test_adding_a_repeated_document_id_is_refused_naming_it(tiny_dataset, tmp_path):
    index = Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx", progress=False)
    with pytest.raises(LexedgeError, match="document id 'a' occurs twice"):
        index.add([Document("a", "売買契約"), Document("b", "賃貸借"), Document("a", "別")])
    assert len(Index.load(tmp_path / "idx")) == 6


def test_an_update_that_changes_only_metadata_is_written(tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"id": "a", "text": "売買契約", "law": "民法"}])
    Index.build(corpus, tmp_path / "idx", progress=False)
    write_jsonl(corpus, [{"id": "a", "text": "売買契約", "law": "商法"}])
    assert main(["index", "update", "--index", str(tmp_path / "idx"), "--docs", str(corpus)]) == 0
    assert Index.load(tmp_path / "idx").document("a").metadata == {"law": "商法"}


# -- finding 3: one writer at a time, each on the index as it is --------------------------------

SLOW_WRITER = textwrap.dedent("""
    import sys, time
    import lexedge.runtime.index as index
    from lexedge.cli import main
    build = index.BM25Index.build.__func__

    def slow_build(cls, *args, **kwargs):  # widen the window between read and write
        time.sleep(1.0)
        return build(cls, *args, **kwargs)

    index.BM25Index.build = classmethod(slow_build)
    raise SystemExit(main(sys.argv[1:]))
""")


def _slow_writers(*commands):
    writers = [subprocess.Popen([sys.executable, "-c", SLOW_WRITER, *map(str, command)],
                                env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for command in commands]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err


def test_two_concurrent_updates_both_land(tiny_dataset, tmp_path):
    Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx", progress=False)
    first = write_jsonl(tmp_path / "a.jsonl", [{"id": "a1", "text": "売買契約の解除"}])
    second = write_jsonl(tmp_path / "b.jsonl", [{"id": "b1", "text": "賃貸借契約の更新"}])
    _slow_writers(("index", "update", "--index", tmp_path / "idx", "--docs", first),
                  ("index", "update", "--index", tmp_path / "idx", "--docs", second))
    index = Index.load(tmp_path / "idx")
    assert len(index) == 8 and index.document("a1") and index.document("b1")


def test_two_concurrent_removals_both_land(tiny_dataset, tmp_path):
    Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx", progress=False)
    _slow_writers(("index", "remove", "--index", tmp_path / "idx", "--ids", "d1"),
                  ("index", "remove", "--index", tmp_path / "idx", "--ids", "d2"))
    index = Index.load(tmp_path / "idx")
    assert len(index) == 4
    assert not {"d1", "d2"} & {hit.id for hit in Searcher(index).search("法律 権利 無効").hits}


def test_threads_adding_through_the_python_api_lose_nothing(tiny_dataset, tmp_path):
    Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx", progress=False)
    errors = []

    def add(number):
        try:
            Index.load(tmp_path / "idx").add([Document(f"t{number}", f"契約 第{number}項")])
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    index = Index.load(tmp_path / "idx")
    assert len(index) == 10
    assert {hit.id for hit in Searcher(index).search("契約").hits} >= {"t0", "t1", "t2", "t3"}


LOCK_STRESS = textwrap.dedent("""
    import sys, threading, time
    from pathlib import Path
    from lexedge.runtime.storage import writer_lock
    destination = Path(sys.argv[1])
    counter = destination.with_name("counter")

    def work():
        for _ in range(20):
            with writer_lock(destination):
                value = int(counter.read_text()) if counter.exists() else 0
                time.sleep(0.001)
                counter.write_text(str(value + 1))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
""")


def test_the_writer_lock_excludes_threads_and_processes_and_leaves_no_file(tmp_path):
    writers = [subprocess.Popen([sys.executable, "-c", LOCK_STRESS, str(tmp_path / "idx")],
                                env=ENV) for _ in range(2)]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    assert (tmp_path / "counter").read_text() == "80"
    assert sorted(os.listdir(tmp_path)) == ["counter"]


def test_a_writer_that_cannot_get_the_lock_names_its_holder(tiny_dataset, tmp_path):
    Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx", progress=False)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from lexedge.runtime.storage import writer_lock\n"
         "with writer_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(30)",
         str(tmp_path / "idx")], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = lexedge("index", "remove", "--index", tmp_path / "idx", "--ids", "d1",
                         env=dict(ENV, LEXEDGE_LOCK_TIMEOUT="1.5"))
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 2
    assert f"pid {holder.pid}" in result.stderr and "still holds its lock" in result.stderr
    assert len(Index.load(tmp_path / "idx")) == 6


# -- finding 4: a long-lived Searcher follows a rebuilt index ----------------------------------

def test_a_searcher_keeps_working_and_reloads_after_a_rebuild_in_place(tiny_dataset, tmp_path):
    out = tmp_path / "idx"
    Index.build(tiny_dataset / "corpus.jsonl", out, progress=False)
    searcher = Searcher(out)
    assert searcher.search("労働時間", top=1).hits[0].id == "d5"
    other = write_jsonl(tmp_path / "other.jsonl", [
        {"id": f"n{i}", "title": f"新法 第{i}条", "text": "労働時間の記録を保存する。" * (i + 1)}
        for i in range(5)])
    Index.build(other, out, progress=False)
    hits = searcher.search("労働時間", top=3).hits
    assert hits and all(hit.id.startswith("n") for hit in hits)
    assert hits[0].text.startswith("労働時間の記録")


# -- finding 5: a kill between the renames is completed by the next command --------------------

KILLED_SWAP = textwrap.dedent("""
    import os, sys
    from lexedge.runtime import storage
    from lexedge.runtime.index import Index
    replace = os.replace

    def replace_then_die(source, target):
        replace(source, target)
        if ".old-" in str(target):  # the old version retired, the new one not yet in place
            os._exit(9)

    storage.os.replace = replace_then_die
    Index.build(sys.argv[1], sys.argv[2], progress=False)
""")


@pytest.mark.parametrize("command", ["search", "update", "remove", "build"])
def test_a_kill_between_the_renames_is_completed_by_the_next_command(tiny_dataset, tmp_path,
                                                                      command):
    out = tmp_path / "idx"
    Index.build(tiny_dataset / "corpus.jsonl", out, progress=False)
    newer = write_jsonl(tmp_path / "newer.jsonl", [
        {"id": "n1", "title": "新法 第一条", "text": "労働時間の記録を保存する。"},
        {"id": "n2", "title": "新法 第二条", "text": "賃金台帳を作成する。"}])
    killed = subprocess.run([sys.executable, "-c", KILLED_SWAP, str(newer), str(out)],
                            env=ENV)
    assert killed.returncode == 9 and not out.exists()
    arguments = {"search": ["search", "労働時間", "--index", out, "--json"],
                 "update": ["index", "update", "--index", out, "--docs", newer],
                 "remove": ["index", "remove", "--index", out, "--ids", "n2"],
                 "build": ["index", "build", "--docs", newer, "--out", out]}[command]
    result = lexedge(*arguments)
    assert result.returncode == 0, result.stderr
    index = Index.load(out)
    assert index.document("n1").text == "労働時間の記録を保存する。"  # rolled forward
    assert len(index) == (1 if command == "remove" else 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx", "newer.jsonl", "tiny"]


def test_every_file_and_folder_is_fsynced_before_the_swap(tiny_dataset, tmp_path, monkeypatch):
    synced = []
    fsync = os.fsync

    def recording_fsync(descriptor):
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        fsync(descriptor)

    monkeypatch.setattr(storage.os, "fsync", recording_fsync)
    out = tmp_path / "idx"
    Index.build(tiny_dataset / "corpus.jsonl", out, progress=False)
    staged = {name.split(".ready-")[0] for name in synced}
    files = {str(p.relative_to(out)) for p in out.rglob("*")}
    staged_relative = {path.split("/", 1)[1] for path in
                       (s[len(str(tmp_path)) + 1:] for s in synced if ".idx.tmp-" in s)
                       if "/" in path}
    assert files <= staged_relative, files - staged_relative
    assert str(tmp_path) in staged  # the parent folder, after the renames


# -- finding 7: checksums; an edited or damaged index is refused by name -----------------------

def _reverse_ids(index):
    path = index / "docs.ids.json"
    path.write_text(json.dumps(json.loads(path.read_text())[::-1]))
    return "docs.ids.json"


def _edit_offsets(index):
    offsets = np.load(index / "docs.offsets.npy")
    offsets[1] += 1
    np.save(index / "docs.offsets.npy", offsets)
    return "docs.offsets.npy"


def _dense_dimension(index):
    path = index / "dense" / "dense.json"
    params = json.loads(path.read_text())
    path.write_text(json.dumps(dict(params, dimension=params["dimension"] // 2)))
    return "dense.json"


def _manifest_edit(change):
    def edit(index):
        path = index / "manifest.json"
        manifest = json.loads(path.read_text())
        change(manifest)
        path.write_text(json.dumps(manifest))
        return "manifest.json"
    return edit


def _truncate(relative):
    def cut(index):
        path = index / relative
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return path.name
    return cut


def _first_bm25_array(index):
    return _truncate(sorted(p.relative_to(index) for p in (index / "bm25").glob("*.npy"))[0])(
        index)


DAMAGE = {
    "reversed ids": _reverse_ids,
    "edited offsets": _edit_offsets,
    "dense dimension": _dense_dimension,
    "bm25 analyzer": _manifest_edit(lambda m: m["analyzer"].update(name="word")),
    "bundle null": _manifest_edit(lambda m: m.update(bundle=None)),
    "truncated vectors.npy": _truncate("dense/vectors.npy"),
    "truncated docs.jsonl": _truncate("docs.jsonl"),
    "truncated bm25 array": _first_bm25_array,
}


@pytest.fixture
def hybrid_index(tiny_dataset, tiny_bundle, tmp_path):
    from lexedge.runtime.bundle import Bundle

    Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx", progress=False,
                bundle=Bundle.load(tiny_bundle))
    return tmp_path / "idx"


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_an_edited_or_damaged_index_is_refused_by_name(hybrid_index, damage):
    assert lexedge("search", "労働時間", "--index", hybrid_index).returncode == 0
    name = DAMAGE[damage](hybrid_index)
    error = one_line_error(lexedge("search", "労働時間", "--index", hybrid_index))
    assert name in error and "rebuild" in error


def test_a_file_gone_while_the_index_opens_is_named_not_a_traceback(hybrid_index, monkeypatch):
    """A file that vanishes between the manifest check and its hash (a copy or cleanup under
    way) is reported in one line naming it, as Index.load reports damage."""
    from lexedge.runtime import index as index_module

    checked = index_module._checked_file_list

    def vanishing(path, manifest):
        files = checked(path, manifest)
        (path / "dense" / "vectors.npy").unlink()
        return files

    monkeypatch.setattr(index_module, "_checked_file_list", vanishing)
    with pytest.raises(LexedgeError, match=r"vectors\.npy: unreadable .*rebuild"):
        Index.load(hybrid_index)


@pytest.mark.parametrize("name", ["terms.npy", "terms.offsets.npy", "terms.vocabulary.json"])
def test_damaged_update_only_terms_are_refused_by_the_update_that_reads_them(
        tiny_dataset, tmp_path, name):
    """A search does not read (nor hash) the stored BM25 terms; an update, which rebuilds
    BM25 from them, refuses them by name when they changed, and changes nothing."""
    Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx", progress=False)
    before = Searcher(tmp_path / "idx").search("労働時間").hits
    _truncate(f"bm25/{name}")(tmp_path / "idx")
    assert Searcher(tmp_path / "idx").search("労働時間").hits == before
    added = write_jsonl(tmp_path / "new.jsonl", [{"id": "new", "text": "労働時間の新しい規定"}])
    error = one_line_error(lexedge("index", "add", "--index", tmp_path / "idx",
                                   "--docs", added))
    assert f"{name}: sha256 mismatch" in error and "rebuild" in error
    assert len(Index.load(tmp_path / "idx")) == 6


# -- finding 11: same vectors, same dense index ------------------------------------------------

def test_dense_builds_of_the_same_vectors_are_identical(tmp_path):
    vectors = np.random.default_rng(0).normal(size=(3000, 24)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    # The graph: hnswlib leaves the unused link slots of its file uninitialised, so two equal
    # graphs can differ in bytes; the same neighbours for every vector is what must hold (with
    # two threads a build differed in 2 of 3 tries here).
    first, *others = [DenseIndex.build(vectors) for _ in range(3)]
    labels, scores = first.search(vectors, k=100, ef=100)
    for other in others:
        other_labels, other_scores = other.search(vectors, k=100, ef=100)
        np.testing.assert_array_equal(other_labels, labels)
        np.testing.assert_array_equal(other_scores, scores)
    for name in ("a", "b"):  # the exact index, below EXACT_LIMIT vectors: the same bytes
        (tmp_path / name).mkdir()
        build_dense(vectors).save(tmp_path / name)
    assert [(tmp_path / "a" / n).read_bytes() for n in ("vectors.npy", "labels.npy")] == \
        [(tmp_path / "b" / n).read_bytes() for n in ("vectors.npy", "labels.npy")]
