"""Building an index streams the corpus: its text is never all in memory (issue 2, point 2)."""

import random
import string
import tracemalloc

from lexedge.runtime.index import Index


def peak_memory_of_build(tmp_path, word_length: int) -> tuple[int, int]:
    rng = random.Random(0)
    vocabulary = ["".join(rng.choices(string.ascii_lowercase, k=word_length))
                  for _ in range(2000)]
    corpus = tmp_path / f"corpus-{word_length}.jsonl"
    with corpus.open("w", encoding="utf-8") as handle:
        for i in range(2000):
            text = " ".join(rng.choices(vocabulary, k=100))
            handle.write(f'{{"id": "d{i}", "text": "{text}"}}\n')
    tracemalloc.start()
    Index.build(corpus, tmp_path / f"idx-{word_length}", analyzer="word", progress=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, corpus.stat().st_size


def test_index_build_memory_does_not_grow_with_text_size(tmp_path):
    # Same number of terms, ten times more text: if the build held the texts, its peak would
    # grow by at least the extra text (about 18 MB); streaming keeps it flat.
    short_peak, short_bytes = peak_memory_of_build(tmp_path, 10)
    long_peak, long_bytes = peak_memory_of_build(tmp_path, 100)
    extra_text = long_bytes - short_bytes
    assert extra_text > 15_000_000
    assert long_peak - short_peak < 0.1 * extra_text, (short_peak, long_peak, extra_text)
