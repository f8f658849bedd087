"""Issue 20: hostile queries and corpus lines (lone surrogates, control characters, NUL bytes,
huge sizes, broken JSON) end in a result or a one-line ``LexedgeError``, never in any other
exception. Seeded and bounded: the same cases every run, a few seconds in all."""

import json
import random

import pytest

from lexedge.runtime.bundle import Bundle
from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.index import Index
from lexedge.runtime.searcher import Searcher

PIECES = ["民法", "第九十条", "契約", "労働時間", "the", " ", "\n", "\t", "\x00", "\x1b]0;owned\x07",
          "\x1b[2J", "\ud800", "\udcff", "\U0001F600", "\u202e", "\x7f", "\x85", "\ufeff",
          "[bold]", "[@click=app.quit]", "{", "\"", "\\", "🂡" * 3, "ｶﾞ", "\u3000"]


def hostile_text(rng: random.Random, size: int) -> str:
    return "".join(rng.choice(PIECES) for _ in range(size))


def hostile_queries(rng: random.Random) -> list[str]:
    queries = [hostile_text(rng, rng.randint(0, 40)) for _ in range(150)]
    queries += ["", " ", "\x00" * 10, "\ud800", "契約" * 50_000, "a" * 100_000,
                "".join(chr(c) for c in range(0, 0x250))]
    return queries


@pytest.fixture(scope="module")
def hybrid_searcher(tmp_path_factory):
    from support.tiny_bundle import build_tiny_bundle

    root = tmp_path_factory.mktemp("fuzz")
    records = [{"id": f"d{i}", "title": f"民法 第{i}条", "text": "契約の解除と労働時間。" * (i + 1)}
               for i in range(12)]
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                      encoding="utf-8")
    # the tokenizer's vocabulary must be valid text: no lone surrogates
    characters = "".join(p for p in PIECES if not 0xD800 <= ord(p[0]) <= 0xDFFF)
    bundle = build_tiny_bundle(root / "bundle", characters + corpus.read_text("utf-8"))
    Index.build(corpus, root / "idx", bundle=Bundle.load(bundle), progress=False)
    return Searcher(root / "idx")


def test_hostile_queries_give_results_or_one_line_errors(hybrid_searcher):
    rng = random.Random(20)
    for query in hostile_queries(rng):
        for options in ({}, {"rerank": 5, "budget": 8}, {"fusion": "rrf", "top": 3}):
            try:
                result = hybrid_searcher.search(query, **options)
            except LexedgeError as error:
                assert "\n" not in str(error) and len(str(error)) < 500
                continue
            for hit in result.hits:
                json.dumps(hit.to_dict(), ensure_ascii=False).encode("utf-8")


def hostile_lines(rng: random.Random) -> list[str]:
    lines = []
    for _ in range(30):
        kind = rng.randrange(6)
        text = hostile_text(rng, rng.randint(0, 60))
        if kind == 0:
            lines.append(json.dumps({"id": hostile_text(rng, 3), "text": text}))
        elif kind == 1:
            lines.append(json.dumps({"id": str(rng.random()), "text": text,
                                     "title": hostile_text(rng, 5)}, ensure_ascii=False,
                                    ).encode("utf-8", "surrogatepass").decode("utf-8", "replace"))
        elif kind == 2:
            lines.append(json.dumps({"id": rng.randrange(9), "text": rng.choice([None, 5, [text]])}))
        elif kind == 3:
            lines.append(json.dumps({"id": "x", "text": text})[: rng.randint(1, 20)])
        elif kind == 4:
            lines.append(json.dumps({"id": "big", "text": "契約" * rng.choice([10, 600_000])}))
        else:
            lines.append(json.dumps({"id": "s", "text": "\ud800" + text}))
    return lines


def test_hostile_corpus_lines_build_or_fail_with_one_line(tmp_path):
    rng = random.Random(21)
    lines = hostile_lines(rng)
    for number in range(40):
        corpus = tmp_path / f"corpus{number}.jsonl"
        chosen = [json.dumps({"id": "ok", "text": "契約の解除"})] + rng.sample(lines, 3)
        corpus.write_bytes(("\n".join(chosen) + "\n").encode("utf-8", "surrogatepass"))
        try:
            index = Index.build(corpus, tmp_path / f"idx{number}", progress=False)
        except LexedgeError as error:
            assert "\n" not in str(error) and str(corpus) in str(error)
            continue
        Searcher(index).search(hostile_text(rng, 10))
