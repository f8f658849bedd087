"""A vocabulary-trimmed INT8 bundle against the untrimmed one, in one run (issue 19, item 1):
files, a cold process's load time and memory, encoding speed, and how far the vectors move
on held-out text (STARD dev questions, ja_appi dev contract clauses: neither was in the
keep-list, which comes from the corpora and training queries).

    lexedge export --int8 --embedder default --out work-out/bundle_full
    lexedge export --int8 --embedder default --trim-vocabulary ../shared/data/stard \\
        ../shared/data/ja_statutes ../shared/data/ja_appi --keep-script cjk \\
        --out work-out/bundle_trimmed
    python bench/trimmed_bundle.py --full work-out/bundle_full --trimmed work-out/bundle_trimmed

Writes ``bench/results/trimmed_bundle.{json,md}``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from compute_bound import _cpu_flags
from lock_fsync_cost import cpu_model
from vocabulary_trim import split_ids, texts_of

from report import write_report

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

COLD = """
import sys, time
started = time.perf_counter()
from lexedge.runtime.bundle import Bundle
bundle = Bundle.load(sys.argv[1])
bundle.embedder().encode(["民法第九十条の規定"], kind="query")
seconds = time.perf_counter() - started
hwm = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
print(seconds, hwm)
"""


def cold(bundle: Path, repeats: int = 3) -> dict:
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", COLD, str(bundle)], check=True,
                             capture_output=True, text=True).stdout.split()
        runs.append((float(out[0]), int(out[1]) / 1024))
    return {"load_and_first_query_s": round(float(np.median([r[0] for r in runs])), 3),
            "peak_rss_mb": round(float(np.median([r[1] for r in runs])), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", type=Path, required=True)
    parser.add_argument("--trimmed", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--passages", type=int, default=1000,
                        help="STARD articles encoded for speed and agreement")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    from lexedge.runtime.bundle import Bundle

    data = args.data
    sets = {
        "STARD dev questions (zh)": ("query", texts_of(data / "stard" / "queries.jsonl",
                                                       split_ids(data, "stard", "dev"))),
        "ja_appi dev clauses (ja)": ("query", texts_of(data / "ja_appi" / "queries.jsonl",
                                                       split_ids(data, "ja_appi", "dev"))),
        f"STARD articles (first {args.passages})": (
            "passage", texts_of(data / "stard" / "corpus.jsonl")[: args.passages]),
    }
    bundles = {"full": Bundle.load(args.full), "trimmed": Bundle.load(args.trimmed)}
    results = {"cpu": cpu_model(), "flags": _cpu_flags(), "bundles": {}, "agreement": {}}
    vectors = {}
    for name, bundle in bundles.items():
        files = {file: (bundle.path / file).stat().st_size for file in bundle.manifest["files"]}
        row = {"files_mb": {f: round(b / 1e6, 1) for f, b in files.items()},
               "pieces": (bundle.manifest["embedder"].get("vocabulary") or {}).get("kept", 250002),
               **cold(bundle.path)}
        embedder = bundle.embedder()
        for label, (kind, texts) in sets.items():
            started = time.perf_counter()
            vectors[name, label] = embedder.encode(texts, kind=kind)
            if kind == "passage":
                row["passages_per_s"] = round(len(texts) / (time.perf_counter() - started), 1)
        results["bundles"][name] = row
        print(name, row, flush=True)
    for label in sets:
        full, trimmed = vectors["full", label], vectors["trimmed", label]
        cosine = (full * trimmed).sum(axis=1)
        results["agreement"][label] = {"texts": len(cosine),
                                       "cosine_min": round(float(cosine.min()), 5),
                                       "cosine_mean": round(float(cosine.mean()), 5)}
    full, trimmed = results["bundles"]["full"], results["bundles"]["trimmed"]
    lines = [
        "# Vocabulary-trimmed INT8 embedder vs the untrimmed one (multilingual-e5-small)",
        "",
        f"CPU: {results['cpu']} ({results['flags']}); both bundles measured in this one run. "
        "Cold = a fresh process loads the bundle (hash checks included) and embeds one query; "
        "median of 3.",
        "",
        "| bundle | pieces | files | cold load + 1st query | peak RSS | passages/s |",
        "|---|---|---|---|---|---|",
        *(f"| {name} | {row['pieces']:,} | "
          + ", ".join(f"{f} {mb} MB" for f, mb in row["files_mb"].items())
          + f" | {row['load_and_first_query_s']} s | {row['peak_rss_mb']} MB | "
          f"{row['passages_per_s']} |" for name, row in results["bundles"].items()),
        "",
        "Vectors of the trimmed bundle against the untrimmed one (INT8 both), on text the "
        "keep-list was not built from (the articles are in it):",
        "",
        "| texts | n | cosine min | cosine mean |",
        "|---|---|---|---|",
        *(f"| {label} | {row['texts']} | {row['cosine_min']} | {row['cosine_mean']} |"
          for label, row in results["agreement"].items()),
        "",
        f"Cold start {full['load_and_first_query_s'] / trimmed['load_and_first_query_s']:.1f}x "
        f"faster, peak RSS {full['peak_rss_mb'] / trimmed['peak_rss_mb']:.1f}x smaller.",
        "",
        "Reproduce: see the docstring of `bench/trimmed_bundle.py`.",
    ]
    write_report(args.out, "trimmed_bundle", results, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
