"""Passage states stored at index time (issue 19, item 3; PreTTR, ColBERTv2's residuals):
``index build --passage-states`` stores what a late-interaction reranker reads of every
passage, a search re-ranks from them by encoding the query alone, updates carry them, and a
changed row is refused by name."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lexedge.cli import main
from lexedge.runtime.bundle import Bundle
from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.index import Index
from lexedge.runtime.passage_states import STATES_FOLDER, TOKENS_FILE
from lexedge.runtime.residual_codec import ResidualCodec
from lexedge.runtime.searcher import Searcher
from support.tiny_bundle import build_tiny_bundle

QUERY = "本人の同意なしに個人データを第三者へ提供できますか"
NEW = [{"id": "n1", "title": "民法 第五百四十一条",
        "text": "当事者の一方がその債務を履行しない場合において、相手方が相当の期間を定めてその履行の催告をし"}]


def _characters(dataset) -> str:
    return "".join(path.read_text(encoding="utf-8") for path in (
        dataset / "corpus.jsonl", dataset / "queries.jsonl")) + json.dumps(
        NEW, ensure_ascii=False)


@pytest.fixture
def late_interaction_bundle(tmp_path, tiny_dataset):
    return build_tiny_bundle(tmp_path / "bundle", _characters(tiny_dataset),
                             reranker="late_interaction")


@pytest.fixture
def stored(late_interaction_bundle, tiny_dataset, tmp_path):
    return Index.build(tiny_dataset, tmp_path / "idx",
                       bundle=Bundle.load(late_interaction_bundle), progress=False,
                       passage_states=8)


def _unpacked_reference(codec: ResidualCodec, states: np.ndarray) -> np.ndarray:
    """The codec's arithmetic without its bit packing: nearest centroid plus bucket values."""
    nearest = np.argmax(states @ codec.centroids.T, axis=1)
    codes = np.searchsorted(codec.cutoffs, states - codec.centroids[nearest])
    restored = codec.centroids[nearest] + codec.values[codes]
    return restored / np.linalg.norm(restored, axis=1, keepdims=True)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_the_residual_codec_packs_each_width_and_reads_back_what_it_quantised(bits):
    rng = np.random.default_rng(3)
    sample = rng.normal(size=(4000, 32)).astype(np.float32)
    sample /= np.linalg.norm(sample, axis=1, keepdims=True)
    codec = ResidualCodec.fit(sample, bits, centroids=64)
    assert len(codec.centroids) == 64 and codec.record_bytes == 2 + 32 * bits // 8
    states = sample[:300]
    records = codec.encode(states)
    assert records.shape == (300, codec.record_bytes) and records.dtype == np.uint8
    restored = codec.decode(records)
    np.testing.assert_allclose(restored, _unpacked_reference(codec, states), atol=1e-6)
    cosine = float(np.mean(np.sum(restored * states, axis=1)))
    assert cosine > {1: 0.75, 2: 0.9, 4: 0.98, 8: 0.999}[bits]


def test_a_small_sample_gets_fewer_centroids_a_power_of_two():
    sample = np.eye(16, dtype=np.float32)[np.arange(100) % 16]
    assert len(ResidualCodec.fit(sample, 2).centroids) == 4  # 100 tokens // 16 -> 6 -> 4


def test_a_search_re_ranks_from_the_stored_states_as_live_re_ranking_does(stored):
    searcher = Searcher(stored)
    assert stored.manifest["passage_states"]["bits"] == 8
    from_index = searcher.search(QUERY, rerank=6)
    assert from_index.settings["rerank_states"] == "stored"
    searcher.stored_states = None
    live = searcher.search(QUERY, rerank=6)
    assert live.settings["rerank_states"] == "live"
    assert [h.id for h in from_index.hits] == [h.id for h in live.hits]
    np.testing.assert_allclose([h.scores["rerank"] for h in from_index.hits],
                               [h.scores["rerank"] for h in live.hits], atol=0.01)


def test_a_search_reading_other_lengths_or_another_reranker_re_ranks_live(
        stored, late_interaction_bundle, tiny_dataset, tmp_path):
    assert Searcher(stored).search(QUERY, rerank=3, rerank_tokens=8).settings[
        "rerank_states"] == "live"
    other = build_tiny_bundle(tmp_path / "other", _characters(tiny_dataset),
                              reranker="late_interaction", reranker_seed=9)
    # the same embedder: the index serves; its states belong to the other reranker
    searcher = Searcher(tmp_path / "idx", bundle=other)
    assert searcher.search(QUERY, rerank=3).settings["rerank_states"] == "live"


def test_an_update_appends_the_new_passages_states_and_keeps_the_others(stored):
    before = stored.states.get(range(len(stored.docs)))
    segment = stored.path / STATES_FOLDER / TOKENS_FILE
    inode = segment.stat().st_ino
    updated = stored.add(NEW).remove(["d3"])
    assert len(updated.states) == len(updated.docs) == 7
    # the first segment linked, not copied or rewritten; the new row in a segment of its
    # own; a removal adds none
    assert segment.stat().st_ino == inode
    assert [name for name, _ in updated.states.segments] == [TOKENS_FILE, "tokens-1.bin"]
    assert not (updated.path / STATES_FOLDER / "tokens-2.bin").exists()
    kept = updated.states.get(range(6))
    for old, new in zip(before, kept):
        np.testing.assert_array_equal(old, new)
    (new_states, _), = updated.bundle.reranker().token_states(
        [updated.document("n1").indexed_text], "passage")
    restored = updated.states.get([updated.row_of("n1")])[0]
    assert restored.shape == new_states.shape
    assert float(np.min(np.sum(restored * new_states, axis=1))) > 0.99
    assert Searcher(updated).search(NEW[0]["text"], rerank=3).hits[0].id == "n1"


def test_a_changed_row_of_states_is_refused_by_name_when_read(stored, tmp_path):
    path = tmp_path / "idx" / STATES_FOLDER / TOKENS_FILE
    data = bytearray(path.read_bytes())
    data[5] ^= 0x40  # inside row 0's first token's codes
    path.write_bytes(bytes(data))
    searcher = Searcher(tmp_path / "idx")  # opening does not read the states
    with pytest.raises(LexedgeError, match=r"tokens\.bin: row 0 does not match its digest"):
        searcher.index.states.get([0])
    # a search names the document whose states are damaged
    with pytest.raises(LexedgeError, match=r"row 0 \(document 'd1'\) does not match"):
        searcher.search(searcher.index.document("d1").text, rerank=6)
    recorded = searcher.index.manifest["files"][f"{STATES_FOLDER}/{TOKENS_FILE}"]
    # an update links the segment unread; the damaged row is still refused, and the
    # manifest still records the segment as it was written
    updated = searcher.index.add(NEW)
    assert updated.manifest["files"][f"{STATES_FOLDER}/{TOKENS_FILE}"] == recorded
    with pytest.raises(LexedgeError, match=r"tokens\.bin: row 0 does not match its digest"):
        Searcher(updated).index.states.get([0])
    assert len(updated.states.get([1, updated.row_of("n1")])) == 2


def test_an_update_copies_the_states_where_the_file_system_has_no_hard_links(
        stored, monkeypatch):
    def refused(source, target):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr("os.link", refused)
    segment = stored.path / STATES_FOLDER / TOKENS_FILE
    inode, recorded = segment.stat().st_ino, stored.manifest["files"][
        f"{STATES_FOLDER}/{TOKENS_FILE}"]
    updated = stored.add(NEW)
    assert segment.stat().st_ino != inode
    assert updated.manifest["files"][f"{STATES_FOLDER}/{TOKENS_FILE}"] == recorded
    np.testing.assert_array_equal(updated.states.get([0])[0], stored.states.get([0])[0])


@pytest.mark.parametrize("reranker", [False, True])
def test_passage_states_without_a_late_interaction_reranker_are_refused_in_one_line(
        reranker, tiny_dataset, tmp_path, capsys):
    bundle = build_tiny_bundle(tmp_path / "b", "abc", reranker=reranker)
    out = tmp_path / "idx"
    assert main(["index", "build", "--docs", str(tiny_dataset), "--out", str(out),
                 "--bundle", str(bundle), "--passage-states"]) == 2
    error = capsys.readouterr().err.strip()
    assert "--passage-states" in error and "late-interaction" in error and "\n" not in error
    assert not out.exists()
    assert main(["index", "build", "--docs", str(tiny_dataset), "--out", str(out),
                 "--passage-states"]) == 2
    assert "needs a --bundle" in capsys.readouterr().err
    assert not out.exists()


def test_the_command_line_builds_them_and_reports_their_size(late_interaction_bundle,
                                                            tiny_dataset, tmp_path, capsys):
    assert main(["index", "build", "--docs", str(tiny_dataset), "--out", str(tmp_path / "i"),
                 "--bundle", str(late_interaction_bundle), "--passage-states", "4",
                 "--json"]) == 0
    states = json.loads(capsys.readouterr().out)["passage_states"]
    assert states["bits"] == 4 and states["tokens"] == 64
    assert states["bytes"] == sum(p.stat().st_size for p in (tmp_path / "i" / STATES_FOLDER)
                                  .iterdir())
    # a rebuild without the option says it drops them
    assert main(["index", "build", "--docs", str(tiny_dataset), "--out", str(tmp_path / "i"),
                 "--bundle", str(late_interaction_bundle)]) == 0
    assert "held stored passage states; this build stores none" in capsys.readouterr().err
    assert not (tmp_path / "i" / STATES_FOLDER).exists()


def test_a_segment_name_pointing_out_of_the_states_folder_is_refused(stored, tmp_path):
    import shutil

    from lexedge.runtime.passage_states import CODEC_FILE, PassageStates

    folder = shutil.copytree(stored.path / STATES_FOLDER, tmp_path / "copy")
    codec = json.loads((folder / CODEC_FILE).read_text(encoding="utf-8"))
    codec["segments"][0][0] = "../docs.jsonl"
    (folder / CODEC_FILE).write_text(json.dumps(codec), encoding="utf-8")
    with pytest.raises(LexedgeError, match=r"segment '\.\./docs\.jsonl' is not a states segment"):
        PassageStates(folder)
