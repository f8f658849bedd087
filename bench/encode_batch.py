"""Passage-encoding speed against the batch size, for the built-in bundle and the zero-shot
multilingual-e5-small INT8 bundle, side by side in one run: the measurement behind the
encoder's default batch size (``OnnxEmbedder.encode``), which every index build uses.

Each (bundle, batch size) encodes the same random STARD articles in a process of its own
(one model loaded, as an index build has it), rounds alternating, median of 3.

    lexedge export --int8 --embedder default --out work-out/e5-int8
    python bench/encode_batch.py --baseline work-out/e5-int8 --sizes 1 2 4 8 16 32
    python bench/encode_batch.py --baseline work-out/e5-int8 --sample first --articles 5000 \\
        --sizes 1 4 32 --name encode_batch_first

Writes ``bench/results/encode_batch.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from builtin_speed import article_sample, compared_bundles, throughput
from compute_bound import _cpu_flags
from lock_fsync_cost import cpu_model
from report import write_report

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    compared_bundles(parser)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--articles", type=int, default=1000)
    parser.add_argument("--sample", choices=("random", "first"), default="random",
                        help="random articles, or the corpus's first ones (what the index "
                             "build bench of bench/builtin_speed.py takes)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--name", default="encode_batch")
    args = parser.parse_args(argv)
    from lexedge.runtime.datasets import BeirDataset

    documents = [doc.indexed_text for doc in BeirDataset(args.data / "stard").corpus()]
    sample = article_sample(documents, args.articles, first=args.sample == "first")
    bundles = {"e5-small INT8 (zero-shot)": args.baseline, "built-in": args.bundle}
    runs = {f"{name} @{size}": path for size in args.sizes for name, path in bundles.items()}
    sizes = {f"{name} @{size}": size for size in args.sizes for name in bundles}
    rates = throughput(runs, sample, batch_sizes=sizes)
    table = {name: {size: rates[f"{name} @{size}"] for size in args.sizes} for name in bundles}
    best = {name: max(row, key=row.get) for name, row in table.items()}
    base, ours = table["e5-small INT8 (zero-shot)"], table["built-in"]
    results = {"cpu": cpu_model(), "flags": _cpu_flags(), "cores": os.cpu_count(),
               "articles": args.articles, "sample": args.sample, "articles_per_s": table,
               "best": best,
               "ratio_per_size": {size: round(ours[size] / base[size], 2)
                                  for size in args.sizes},
               "ratio_at_best": round(ours[best["built-in"]]
                                      / base[best["e5-small INT8 (zero-shot)"]], 2)}
    lines = [
        "# Passage encoding against the batch size (one run)", "",
        f"CPU: {results['cpu']} ({results['flags']}), {results['cores']} cores. "
        f"{args.articles:,} {'random' if args.sample == 'random' else 'first'} STARD articles "
        "(the same for every row), each bundle and "
        "size in a process of its own, rounds alternating, median of 3. Articles/s:", "",
        "| bundle | " + " | ".join(f"batch {size}" for size in args.sizes) + " |",
        "|---|" + "---|" * len(args.sizes),
        *[f"| {name} | " + " | ".join(
            f"**{row[size]}**" if size == best[name] else f"{row[size]}"
            for size in args.sizes) + " |" for name, row in table.items()],
        "| built-in / e5-small | " + " | ".join(
            f"{results['ratio_per_size'][size]:.2f}x" for size in args.sizes) + " |", "",
        "Each at its own best size (bold): built-in / e5-small "
        f"**{results['ratio_at_best']:.2f}x**.", "",
        "Reproduce: see the docstring of `bench/encode_batch.py`.",
    ]
    write_report(args.out, args.name, results, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
