"""MLM on the real corpora before the curriculum, kept only if its row helps (issue 19, item 4):
the distilled student continues masked-language-model pretraining on the STARD and
ja_statutes corpora (full, merged), then takes the same curriculum stage 2 as the student
without MLM (``bench/configs/embedder_student_stage2.toml`` with the model's own mistakes kept),
so the two stage-2 models differ by the MLM phase alone.

    python bench/student_mlm.py --student work-out/student/student-L3
    lexedge export --int8 --embedder work-out/student_mlm/stage2/stage2 --trim-vocabulary \\
        ../shared/data/stard ../shared/data/ja_statutes ../shared/data/ja_appi \\
        --keep-script cjk --alpha 0.5 --out work-out/builtin/L3-m2k
    python bench/student_depths.py --bundle L3m2k=work-out/builtin/L3-m2k \\
        --name student_depths_L3_mlm_stage2_keep

and compare with ``bench/results/student_depths_L3_stage2_keep.md`` (the same stage 2 with no
MLM). The MLM phase's settings are ``bench/configs/embedder_student_mlm.toml``; its loss and
wall time go to ``bench/results/student_mlm.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compute_bound import _cpu_flags  # noqa: E402
from lock_fsync_cost import cpu_model  # noqa: E402
from report import REPO, write_report  # noqa: E402
from student_reranker import merge_beir  # noqa: E402

DATA = REPO.parent / "shared" / "data"
MLM_CORPORA = ("stard", "ja_statutes")
MLM_CONFIG = REPO / "bench" / "configs" / "embedder_student_mlm.toml"
STAGE2_CONFIG = REPO / "bench" / "configs" / "embedder_student_stage2.toml"
# the stage-2 run the MLM row is compared with (bench/results/student_depths_L3_stage2_keep.md)
STAGE2_KEEP = ["stage2.false_negative_margin=-1.0", "stage2.hard_negatives=3",
               "stage2.steps=275"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", type=Path, required=True, help="student model folder")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="override of the MLM config (e.g. mlm.steps=100)")
    parser.add_argument("--work", type=Path, default=REPO / "work-out" / "student_mlm")
    parser.add_argument("--stage2-data", type=Path,
                        default=REPO / "work-out" / "student_reranker" / "zh_ja",
                        help="STARD + ja_appi merged (bench/student_reranker.py writes it)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--name", default="student_mlm")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lexedge.trainer.config import TrainEmbedderConfig
    from lexedge.trainer.config_loader import load_config
    from lexedge.trainer.curriculum import Curriculum
    from lexedge.trainer.embedder.family import EmbedderFamily

    if not (args.stage2_data / "corpus.jsonl").is_file():
        parser.error(f"{args.stage2_data}: no merged STARD + ja_appi folder; run "
                     "bench/student_reranker.py first (or pass --stage2-data)")
    args.work.mkdir(parents=True, exist_ok=True)
    corpora = merge_beir({name: args.data / name for name in MLM_CORPORA},
                         args.work / "corpora")
    student = args.student.resolve()
    log = lambda line: print(line, flush=True)  # noqa: E731
    timings = {}
    for phase, config_file, data, base, overrides in (
            ("mlm", MLM_CONFIG, args.work / "corpora", student, args.overrides),
            ("stage2", STAGE2_CONFIG, args.stage2_data, args.work / "mlm" / "mlm",
             STAGE2_KEEP)):
        config = load_config(TrainEmbedderConfig, config_file, [
            f'data_dir="{data}"', f'output_dir="{args.work / phase}"',
            f'base_model="{base}"', *overrides])
        started = time.perf_counter()
        Curriculum(config, EmbedderFamily, resume=args.resume, log=log).run()
        timings[phase] = round(time.perf_counter() - started, 1)

    mlm = json.loads((args.work / "mlm" / "mlm" / "lexedge_stage.json").read_text(
        encoding="utf-8"))
    training = mlm["training"]
    lines = [
        "# MLM on the real corpora before the student's curriculum", "",
        f"CPU: {cpu_model()} ({_cpu_flags()}), {os.cpu_count()} cores. MLM corpora (full, "
        "merged): " + ", ".join(f"{name} {c['corpus']:,} articles"
                                for name, c in corpora.items()) + ".", "",
        "| phase | steps | batch | max tokens | documents seen | loss first → last | seconds |",
        "|---|---|---|---|---|---|---|",
        f"| MLM (`{MLM_CONFIG.relative_to(REPO)}`) | {training['steps']} | "
        f"{mlm['mlm']['batch_size']} | {mlm['mlm']['max_length']} | "
        f"{training['steps'] * mlm['mlm']['batch_size']:,} | {training['loss_first']:.3f} → "
        f"{training['loss_last']:.3f} | {timings['mlm']:.0f} |",
        f"| stage 2 on top (`{STAGE2_CONFIG.relative_to(REPO)}` with "
        f"{', '.join(STAGE2_KEEP)}) | – | – | – | – | – | {timings['stage2']:.0f} |", "",
        "The served quality of the result, against the same stage 2 without MLM: "
        "`bench/results/student_depths_L3_mlm_stage2_keep.md` beside "
        "`bench/results/student_depths_L3_stage2_keep.md`.", "",
        f"Reproduce: `python bench/student_mlm.py --student {args.student}`",
    ]
    write_report(args.results, args.name, {
        "cpu": cpu_model(), "flags": _cpu_flags(), "corpora": corpora,
        "student": str(args.student), "mlm": mlm["mlm"], "training": training,
        "stage2_overrides": STAGE2_KEEP, "wall_seconds": timings}, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
