"""Distil the laptop student embedder from multilingual-e5-small (issue 19, item 2), on the
full corpora: STARD (58,513 articles) and ja_appi (12,116) for the training judgments and
their BM25 hard negatives, plus plain passages sampled from STARD, ja_appi and ja_statutes.

Steps, each timed: BM25 negatives (or, with ``--negatives``, triples from a curriculum stage's
mined negatives); the teacher's vectors (computed once, cached as .npy in
the work folder); the choice of which teacher layers start the student (mean cosine to the
teacher on held texts, before any training, for each candidate set); distillation; the
student's agreement with the teacher on held texts before and after. ``--init`` skips the
layer choice and distils an existing student further (a trained stage: the shipped model's
last one), e.g. from a 12-layer teacher trained on the full corpora:

    python bench/student_distill.py --depth 3 --work work-out/student
    python bench/student_distill.py --teacher work-out/teacher/stage2 \\
        --init work-out/narrow_stage3/stage3 \\
        --negatives work-out/teacher/stage2/hard_negatives.jsonl \\
        --negatives-data work-out/student_reranker/zh_ja --work work-out/teacher_distill

Train splits only: dev queries are never read here (choices on dev are made by the
evaluation that follows, bench/builtin_bundle.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compute_bound import _cpu_flags  # noqa: E402
from lock_fsync_cost import cpu_model  # noqa: E402
from report import portable, write_report  # noqa: E402

from lexedge.trainer.base_models import resolve_base_model  # noqa: E402
from lexedge.trainer.lora import default_model_cache  # noqa: E402
from lexedge.trainer.student import (DistillSettings, agreement, distill,  # noqa: E402
                                     distillation_texts, make_student, mine_triples,
                                     sample_passages, teacher_vectors,
                                     triples_from_negatives)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def layer_candidates(depth: int, total: int = 12) -> list[tuple[int, ...]]:
    """Spread sets that end on the last layer (its output space is the teacher's), with and
    without the first layer."""
    spread = tuple(int(round(i * (total - 1) / (depth - 1))) for i in range(depth)) \
        if depth > 1 else (total - 1,)
    upper = tuple(total - 1 - (depth - 1 - i) * (total // depth) for i in range(depth))
    first = (0,) + tuple(total - 1 - (depth - 2 - i) * (total // depth)
                         for i in range(depth - 1)) if depth > 1 else (0,)
    return list(dict.fromkeys([spread, upper, first, tuple(range(depth))]))


def _depth_of(folder: Path) -> int:
    """Encoder layers of a model folder, or of the base a stage folder's adapters sit on."""
    from lexedge.trainer.lora import stage_chain

    config = json.loads((stage_chain(folder)[-1] / "config.json").read_text(encoding="utf-8"))
    return int(config["num_hidden_layers"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--layers", help="teacher layers, comma-separated (default: chosen)")
    parser.add_argument("--teacher", type=Path, help="teacher model or stage folder (default: "
                        "multilingual-e5-small)")
    parser.add_argument("--ffn-width", type=int, help="narrow the student's feed-forward blocks "
                        "to this many units (make_student's ffn_width)")
    parser.add_argument("--init", type=Path, help="continue distilling this student (a model or "
                        "stage folder, e.g. the shipped one's last stage) instead of starting "
                        "one from teacher layers")
    parser.add_argument("--negatives", type=Path, help="a curriculum stage's hard_negatives.jsonl"
                        " (its mined negatives) instead of BM25 ones")
    parser.add_argument("--negatives-data", type=Path, help="the BEIR folder --negatives names "
                        "documents of")
    parser.add_argument("--work", type=Path, default=Path("work-out/student"))
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--plain", type=int, default=1500, help="plain passages per corpus")
    parser.add_argument("--limit", type=int, help="triples per corpus (default: all)")
    parser.add_argument("--held", type=int, default=200, help="held texts for agreement")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--passage-length", type=int, default=256)
    parser.add_argument("--name", default="student_distill")
    parser.add_argument("--results", type=Path,
                        default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rng = np.random.default_rng(13)
    suffix = f"-F{args.ffn_width}" if args.ffn_width else ""
    args.work.mkdir(parents=True, exist_ok=True)
    phases: dict[str, float] = {}

    started = time.perf_counter()
    if args.negatives:
        triples, stard_info = triples_from_negatives(args.negatives, args.negatives_data,
                                                     seed=rng)
        appi_info = None
        triples = triples[:args.limit] if args.limit else triples
        stard_info["triples"] = len(triples)
    else:
        stard, stard_info = mine_triples(args.data / "stard", seed=rng)
        appi, appi_info = mine_triples(args.data / "ja_appi", seed=rng)
        if args.limit:
            stard, appi = (part[:args.limit] for part in (stard, appi))
        triples = stard + appi
    used = {text for t in triples for text in (t.positive, t.negative)}
    plain = (sample_passages(args.data / "stard", args.plain, seed=rng, exclude=used)
             + sample_passages(args.data / "ja_statutes", args.plain, seed=rng, exclude=used)
             + sample_passages(args.data / "ja_appi", args.plain // 3, seed=rng, exclude=used))
    held, plain = plain[:args.held], plain[args.held:]
    held_triples = [triples[i] for i in rng.choice(len(triples), args.held // 4, replace=False)]
    held_queries = [t.query for t in held_triples]
    held_passages = held + [t.positive for t in held_triples]
    phases["data and the stage's negatives" if args.negatives
           else "data and BM25 negatives"] = time.perf_counter() - started

    teacher = args.teacher or resolve_base_model("default", default_model_cache())
    settings = DistillSettings(layers=(0,), epochs=args.epochs,
                               passage_length=args.passage_length)
    started = time.perf_counter()
    cache = args.work / ("teacher_vectors" + suffix)
    queries, texts = distillation_texts(triples, plain)
    # the cache is valid for exactly these texts at this length
    key = hashlib.sha256(json.dumps([queries, texts, args.passage_length, str(teacher)],
                                    ensure_ascii=False).encode()).hexdigest()
    if (cache / "key.txt").is_file() and (cache / "key.txt").read_text() == key:
        teacher_q = np.load(cache / "queries.npy")
        teacher_p = np.load(cache / "passages.npy")
    else:
        teacher_q, teacher_p = teacher_vectors(teacher, queries, texts, query_length=64,
                                               passage_length=args.passage_length)
        cache.mkdir(parents=True, exist_ok=True)
        np.save(cache / "queries.npy", teacher_q)
        np.save(cache / "passages.npy", teacher_p)
        (cache / "key.txt").write_text(key)
    held_q, held_p = teacher_vectors(teacher, held_queries, held_passages, query_length=64,
                                     passage_length=args.passage_length, progress=False)
    phases["teacher vectors"] = time.perf_counter() - started

    started = time.perf_counter()
    probe = []
    if args.init:  # an existing student: its agreement before this distillation
        init = args.init
        probe.append({"layers": f"`{portable(str(init))}`", **agreement(
            init, held_q, held_p, held_queries, held_passages, query_length=64,
            passage_length=args.passage_length)})
        best = {"layers": list(range(_depth_of(init)))}
        phases["agreement before"] = time.perf_counter() - started
    else:
        candidates = ([tuple(int(i) for i in args.layers.split(","))] if args.layers
                      else layer_candidates(args.depth))
        for layers in candidates:
            folder = args.work / ("init-" + "-".join(map(str, layers)) + suffix)
            make_student(teacher, folder, layers, ffn_width=args.ffn_width,
                         calibration=plain, calibration_length=args.passage_length)
            probe.append({"layers": list(layers), **agreement(
                folder, held_q, held_p, held_queries, held_passages, query_length=64,
                passage_length=args.passage_length)})
            print(f"layers {layers}: {probe[-1]}", flush=True)
        best = max(probe, key=lambda row: row["cosine"])
        init = args.work / ("init-" + "-".join(map(str, best["layers"])) + suffix)
        phases["layer choice"] = time.perf_counter() - started

    settings.layers = tuple(best["layers"])
    out = args.work / (f"student-L{len(settings.layers)}{suffix}" if not args.init
                       else f"student-{args.init.name}-distilled")
    stats = distill(init, teacher, triples, plain, out, settings,
                    teacher_cache=(teacher_q, teacher_p))
    phases["distillation"] = stats["train_seconds"]
    after = agreement(out, held_q, held_p, held_queries, held_passages, query_length=64,
                      passage_length=args.passage_length)

    teacher_name = ("multilingual-e5-small" if args.teacher is None
                    else f"`{portable(str(args.teacher))}`")
    width_note = f", feed-forward blocks narrowed to {args.ffn_width} units" \
        if args.ffn_width else ""
    if appi_info is None:
        data_lines = [f"- {stard_info['queries']} train queries, {stard_info['triples']} "
                      f"triples: a curriculum stage's mined negatives "
                      f"(`{portable(str(args.negatives))}`, 2 per row) over "
                      f"{stard_info['corpus']:,} articles"]
    else:
        data_lines = [
            f"- STARD: {stard_info['queries']} train queries, {stard_info['triples']} triples "
            f"(BM25 negatives from ranks 3-40 over all {stard_info['corpus']:,} articles)",
            f"- ja_appi: {appi_info['queries']} train queries, {appi_info['triples']} triples "
            f"over {appi_info['corpus']:,} articles"]
    rows = [f"| {row['layers']} | {row['cosine']:.4f} | {row['score_kl']:.4f} |"
            for row in probe]
    lines = [
        f"# Student embedder distilled from {teacher_name} ({len(settings.layers)} layers"
        f"{width_note})", "",
        f"CPU: {cpu_model()} ({_cpu_flags()}), {os.cpu_count()} cores. "
        "Data: the **full** corpora; train splits only.", "",
        *data_lines,
        f"- plain passages (embedding term): {len(plain):,} from STARD, ja_statutes and ja_appi;"
        f" {len(held_passages)} passages and {len(held_queries)} queries held out for the "
        "agreement rows", "",
        "## Where the student starts (before training, held texts)" if args.init else
        "## Which teacher layers start the student (before training, held texts)", "",
        "| student | cosine to teacher | score KL |" if args.init else
        "| teacher layers | cosine to teacher | score KL |", "|---|---|---|", *rows, "",
        (f"Continued from `{portable(str(args.init))}`." if args.init
         else f"Chosen: {best['layers']}.")
        + f" After distillation ({settings.epochs} epochs): cosine "
        f"**{after['cosine']:.4f}**, score KL **{after['score_kl']:.4f}**.", "",
        "## Loss per epoch", "", "| epoch | loss | embedding | score | contrastive |",
        "|---|---|---|---|---|",
        *[f"| {i + 1} | {e['loss']:.4f} | {e['embedding']:.4f} | {e['score']:.4f} | "
          f"{e['contrastive']:.4f} |" for i, e in enumerate(stats["epochs"])], "",
        "## Wall time (2 CPU cores)", "", "| phase | seconds |", "|---|---|",
        *[f"| {name} | {seconds:.0f} |" for name, seconds in phases.items()], "",
        "Reproduce: `python bench/student_distill.py "
        + " ".join(portable(a) for a in (argv if argv is not None else sys.argv[1:])) + "`",
    ]
    write_report(args.results, args.name, {
        "cpu": cpu_model(), "flags": _cpu_flags(), "stard": stard_info, "ja_appi": appi_info,
        "plain": len(plain), "probe": probe, "chosen": best["layers"], "after": after,
        "ffn": json.loads((init / "lexedge_model.json").read_text(encoding="utf-8"))[
            "derived_from"].get("ffn"),
        "distillation": stats, "phases_seconds": {k: round(v, 1) for k, v in phases.items()}},
        lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
