"""An index build says how far it is off a terminal too (issue 23): lines with the count, the
total, the rate and what is left, moving with every batch the embedder runs."""

import io

from lexedge.runtime.bundle import Bundle
from lexedge.runtime.embedding_chunks import BuildProgress
from lexedge.runtime.index import Index


def test_off_a_terminal_progress_is_lines_with_the_total_and_what_is_left():
    stream = io.StringIO()  # not a terminal
    progress = BuildProgress(total=100, enabled=True, every=0.0, stream=stream)
    progress.update(32)
    progress.update(32)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("lexedge: embedding 32 of 100 documents, ")
    assert "docs/s, about" in lines[0] and lines[0].endswith("left")
    assert lines[1].startswith("lexedge: embedding 64 of 100 documents")
    assert "done in" in lines[-1]


def test_a_build_reports_each_batch(tiny_dataset, tiny_bundle, tmp_path, monkeypatch, capsys):
    counted = []
    original = BuildProgress.update

    def spy(self, count):
        counted.append((count, self.total))
        original(self, count)
    monkeypatch.setattr(BuildProgress, "update", spy)
    bundle = Bundle.load(tiny_bundle)
    real_encode = type(bundle.embedder()).encode
    monkeypatch.setattr(type(bundle.embedder()), "encode",
                        lambda self, texts, kind="passage", batch_size=32, progress=False,
                        on_batch=None: real_encode(self, texts, kind, 2, progress, on_batch))
    Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx", bundle=bundle)
    assert [c for c, _ in counted if c] == [2, 2, 2]  # six articles in batches of two
    assert {total for _, total in counted} == {6}
    assert "lexedge: embedding 6 of 6 documents" in capsys.readouterr().err
