"""An index build embeds each chunk on a helper thread while its documents go on to be stored
and analysed for BM25 (issue 19: the whole build trailed the embedder's own speed-up because
reading, BM25 and the embedder took turns). The overlap is bounded, keeps document order, and
an embedder's error still stops the build."""

import threading

import numpy as np
import pytest

from lexedge.runtime.datasets import Document
from lexedge.runtime.embedding_chunks import ChunkEmbedding, ChunkStore


class GatedEmbedder:
    """Embeds ``dN`` as [N, 0, 0], but only once ``gate`` is open."""

    dimension = 3

    def __init__(self, fail_on: str | None = None):
        self.gate = threading.Event()
        self.fail_on = fail_on
        self.started = []

    def encode(self, texts, kind="passage", on_batch=None):
        self.started.append(list(texts))
        assert self.gate.wait(10), "the test never opened the gate"
        if self.fail_on in texts:
            raise RuntimeError(f"cannot embed {self.fail_on}")
        if on_batch is not None:
            on_batch(len(texts))
        return np.array([[float(text[1:]), 0.0, 0.0] for text in texts], dtype=np.float32)


def documents(count, pulled=None):
    for number in range(count):
        if pulled is not None:
            pulled.append(number)
        yield Document(id=f"d{number}", text=f"d{number}")


def chunk_embedding(embedder, tmp_path, ahead=2):
    return ChunkEmbedding(embedder, False, None, {"embedded": 0, "reused": 0, "resumed": 0},
                          ChunkStore(tmp_path / "chunks", "gated"), chunk_size=2, ahead=ahead)


def test_documents_pass_on_while_their_chunk_is_still_embedding(tmp_path):
    embedder = GatedEmbedder()
    with chunk_embedding(embedder, tmp_path) as embedding:
        stream = embedding.stream(documents(6))
        # the embedder is blocked, yet the first chunk's documents come through
        assert [next(stream).id, next(stream).id] == ["d0", "d1"]
        embedder.gate.set()
        assert [document.id for document in stream] == ["d2", "d3", "d4", "d5"]
        vectors = embedding.vectors()
    assert vectors[:, 0].tolist() == [0, 1, 2, 3, 4, 5]  # in document order
    assert embedder.started == [["d0", "d1"], ["d2", "d3"], ["d4", "d5"]]


def test_no_more_than_ahead_chunks_are_read_while_the_embedder_is_behind(tmp_path):
    embedder, pulled, passed = GatedEmbedder(), [], []
    with chunk_embedding(embedder, tmp_path, ahead=2) as embedding:
        reader = threading.Thread(target=lambda: passed.extend(
            embedding.stream(documents(20, pulled))))
        reader.start()
        reader.join(0.5)
        assert reader.is_alive()  # held back until the embedder catches up
        assert len(pulled) <= 3 * 2  # two chunks waiting or running, one being read
        embedder.gate.set()
        reader.join(10)
        assert len(passed) == 20
        assert len(embedding.vectors()) == 20


def test_an_embedder_error_stops_the_build(tmp_path):
    embedder = GatedEmbedder(fail_on="d3")
    embedder.gate.set()
    with pytest.raises(RuntimeError, match="cannot embed d3"):
        with chunk_embedding(embedder, tmp_path) as embedding:
            for _ in embedding.stream(documents(40)):
                pass
            embedding.vectors()
    assert len(embedder.started) < 20  # it stopped reading soon after the error
