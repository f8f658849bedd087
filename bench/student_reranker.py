"""Train the laptop reranker (issue 19, item 3) from the distilled student embedder, on the
full corpora: the train splits of STARD (58,513 articles) and ja_appi (12,116) merged into one
BEIR folder (ids prefixed by the dataset's name), so one reranker serves both languages.

The reranker is the student itself in split attention (``bench/configs/
reranker_student_split.toml``): its lower 2 layers encode each side of the pair alone, the
top layer attends across it and is trained through the curriculum's three stages; stage 2
and 3 candidates are the student's own over the merged corpus, and every stage is evaluated
by re-ranking the student's dev top 20 (dev queries of both sets). Also measured: the token
lengths of both corpora and query sets under the student's tokenizer, i.e. what the pair cap
truncates.

    python bench/student_reranker.py --student work-out/student/student-L3

Writes ``bench/results/NAME.{json,md}`` (NAME: ``student_reranker``) and the run under
``--work``; ``lexedge export --reranker WORK/run/stageN`` packages a stage (see
bench/make_builtin.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compute_bound import _cpu_flags  # noqa: E402
from lock_fsync_cost import cpu_model  # noqa: E402
from report import REPO, write_report  # noqa: E402

DATA = REPO.parent / "shared" / "data"
DATASETS = ("stard", "ja_appi")
CONFIG = REPO / "bench" / "configs" / "reranker_student_split.toml"


def merge_beir(sources: dict[str, Path], out: Path) -> dict:
    """One BEIR folder from several: every corpus, query and judgment id prefixed with its
    dataset's name and a dot, so no two sets collide. Rewritten only when missing."""
    counts = {}
    if (out / "merged.json").is_file():
        return json.loads((out / "merged.json").read_text(encoding="utf-8"))
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as corpus, \
            open(out / "queries.jsonl", "w", encoding="utf-8") as queries:
        for name, folder in sources.items():
            rows = 0
            for line in open(folder / "corpus.jsonl", encoding="utf-8"):
                row = json.loads(line)
                corpus.write(json.dumps({**row, "id": f"{name}.{row['id']}"},
                                        ensure_ascii=False) + "\n")
                rows += 1
            if (folder / "queries.jsonl").is_file():  # a corpus alone (ja_statutes) has none
                for line in open(folder / "queries.jsonl", encoding="utf-8"):
                    row = json.loads(line)
                    queries.write(json.dumps({**row, "id": f"{name}.{row['id']}"},
                                             ensure_ascii=False) + "\n")
            counts[name] = {"corpus": rows}
    for split in ("train", "dev"):
        with open(out / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as merged:
            merged.write("query-id\tcorpus-id\tscore\n")
            for name, folder in sources.items():
                qrels = folder / "qrels" / f"{split}.tsv"
                if not qrels.is_file():  # a corpus alone has no judgments
                    continue
                lines = qrels.read_text(encoding="utf-8").splitlines()[1:]
                judged = [line.split("\t") for line in lines if line.strip()]
                for query, doc, score in judged:
                    merged.write(f"{name}.{query}\t{name}.{doc}\t{score}\n")
                counts[name][f"{split}_queries"] = len({query for query, _, _ in judged})
    (out / "merged.json").write_text(json.dumps(counts), encoding="utf-8")
    return counts


def token_lengths(data: Path, student: Path, caps: dict[str, int], sample: int = 3000) -> dict:
    """Token counts (prefix included) of a seeded sample of each corpus and of every query,
    under the student's tokenizer, and the share each cap keeps whole."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(student / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    rng = np.random.default_rng(13)
    found = {}
    for name in DATASETS:
        rows = [json.loads(line) for line in open(data / name / "corpus.jsonl", encoding="utf-8")]
        picked = [rows[i] for i in rng.choice(len(rows), min(sample, len(rows)), replace=False)]
        passages = [f"passage: {row.get('title', '')} {row['text']}".strip() for row in picked]
        queries = ["query: " + json.loads(line)["text"]
                   for line in open(data / name / "queries.jsonl", encoding="utf-8")]
        for side, texts in (("passage", passages), ("query", queries)):
            lengths = np.array([len(e.ids) for e in tokenizer.encode_batch(texts)])
            found[f"{name} {'queries' if side == 'query' else 'passages'}"] = {
                "texts": len(texts), "median": int(np.median(lengths)),
                "p90": int(np.percentile(lengths, 90)),
                "cap": caps[side], "whole": round(float((lengths <= caps[side]).mean()), 3)}
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", type=Path, required=True, help="student model folder")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--work", type=Path, default=REPO / "work-out" / "student_reranker")
    parser.add_argument("--name", default="student_reranker")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--data", type=Path, default=DATA,
                        help="folder holding the stard and ja_appi BEIR folders")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lexedge.trainer.config import TrainRerankerConfig
    from lexedge.trainer.config_loader import load_config
    from lexedge.trainer.curriculum import Curriculum
    from lexedge.trainer.reranker.family import RerankerFamily

    args.work.mkdir(parents=True, exist_ok=True)
    merged = merge_beir({name: args.data / name for name in DATASETS}, args.work / "zh_ja")
    student = args.student.resolve()
    run_dir = args.work / "run"
    config = load_config(TrainRerankerConfig, args.config, [
        f'data_dir="{args.work / "zh_ja"}"', f'output_dir="{run_dir}"',
        f'embedder="{student}"', f'base_model="{student}"', *args.overrides])
    caps = {"query": config.evaluation.max_query_length,
            "passage": config.evaluation.max_passage_length}
    lengths = token_lengths(args.data, student, caps)
    started = time.perf_counter()
    summary = Curriculum(config, RerankerFamily, resume=args.resume,
                         log=lambda line: print(line, flush=True)).run()
    wall = time.perf_counter() - started

    stages = {}
    for name, metrics in summary["metrics"].items():
        row = {k: metrics[k] for k in ("recall@10", "mrr@10", "ndcg@10")}
        manifest = run_dir / name / "lexedge_stage.json"
        if name != "base" and manifest.is_file():
            recorded = json.loads(manifest.read_text(encoding="utf-8"))
            training = recorded["training"]
            row.update(steps=training["steps"], loss_first=training["loss_first"],
                       loss_last=training["loss_last"],
                       seconds=round(training["seconds"] + sum(
                           m.get("seconds", 0) for m in recorded.get("mining", [])), 1))
        stages[name] = row
    lines = [
        "# The laptop reranker: the 3-layer student in split attention", "",
        f"CPU: {cpu_model()} ({_cpu_flags()}), {os.cpu_count()} cores. Data: the **full** "
        "corpora, STARD and ja_appi merged (train splits to train, dev to measure): "
        + ", ".join(f"{name} {c['corpus']:,} articles, {c['train_queries']} train / "
                    f"{c['dev_queries']} dev queries" for name, c in merged.items()) + ".", "",
        f"Student: `{args.student}`; config `{args.config.relative_to(REPO)}`"
        + (f" with {', '.join(args.overrides)}" if args.overrides else "") + ".", "",
        "## Re-ranking the student's dev top 20 (both sets' dev queries together)", "",
        "Stage `base` is the untrained split reranker: the student's own weights.", "",
        "| stage | R@10 | MRR@10 | nDCG@10 | steps | loss first → last | seconds |",
        "|---|---|---|---|---|---|---|",
        *[f"| {name} | {row['recall@10']:.4f} | {row['mrr@10']:.4f} | {row['ndcg@10']:.4f} | "
          f"{row.get('steps', 0)} | "
          + (f"{row['loss_first']:.3f} → {row['loss_last']:.3f}" if "loss_first" in row
             else "–") + f" | {row.get('seconds', 0):.0f} |" for name, row in stages.items()],
        "", f"Whole run: {wall:.0f} s on this CPU (training, mining and evaluation).", "",
        "## What the pair cap truncates (student tokenizer, prefix included)", "",
        "| texts | count | median tokens | p90 | cap | kept whole |", "|---|---|---|---|---|---|",
        *[f"| {name} | {row['texts']:,} | {row['median']} | {row['p90']} | {row['cap']} | "
          f"{row['whole']:.1%} |" for name, row in lengths.items()], "",
        f"Reproduce: `python bench/student_reranker.py --student {args.student}`",
    ]
    write_report(args.results, args.name, {
        "cpu": cpu_model(), "flags": _cpu_flags(), "datasets": merged,
        "student": str(args.student), "config_file": str(args.config.relative_to(REPO)),
        "overrides": args.overrides, "config": summary.get("config"), "stages": stages,
        "token_lengths": lengths, "wall_seconds": round(wall, 1)}, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
