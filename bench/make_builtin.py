"""Make the built-in bundle shipped in ``runtime/builtin`` (issue 19, item 5) from a distilled
student: the card from the measured results, the INT8 export with the trimmed vocabulary and
the fusion weights chosen on dev, then the manifest's paths made portable (a committed file
names no machine) and the manifest sealed again.

    python bench/student_distill.py --depth 3 --plain 1000 --epochs 2 --name student_distill_L3
    lexedge export --int8 --embedder work-out/student/student-L3 --trim-vocabulary \\
        ../shared/data/stard ../shared/data/ja_statutes ../shared/data/ja_appi \\
        --keep-script cjk --out work-out/builtin/L3
    python bench/student_depths.py --bundle L3=work-out/builtin/L3 --name student_depths_L3
    python bench/student_reranker.py --student work-out/student/student-L3
    python bench/make_builtin.py --student work-out/student/student-L3 --depth L3 \\
        --alpha 0.5 --reranker work-out/student_reranker/run/stage3 --rerank-weight W

A curriculum-trained student whose feed-forward blocks were narrowed and distilled from it
(``bench/student_distill.py --teacher STAGE --ffn-width N``) ships with ``--narrowed`` naming
that distillation's results:

    python bench/make_builtin.py --student work-out/narrow/student-L3-F512 --depth F512 \\
        --distilled L3 --depths student_depths_L3s3k_F512 --alpha 0.6 \\
        --curriculum work-out/student_stage3/stage2 work-out/student_stage3/stage3 \\
        --narrowed L3s3k_F512

The narrowed model taken through a curriculum stage again ships with ``--after-narrowing``
listing that stage's folder:

    python bench/make_builtin.py --student work-out/narrow_stage3/stage3 --depth F512s3 \\
        --distilled L3 --depths student_depths_F512_stage3 --alpha 0.7 --alpha-for ja=0.5 \\
        --curriculum work-out/student_stage3/stage2 work-out/student_stage3/stage3 \\
        --narrowed L3s3k_F512 --after-narrowing work-out/narrow_stage3/stage3

A student taken further through the curriculum ships the same way: ``--student`` is its last
stage folder, ``--curriculum`` lists its stage folders (for the card), ``--distilled L3`` names
the distillation it started from and ``--depths``/``--depth`` the results rows measuring it:

    python bench/make_builtin.py --student work-out/student_stage3/stage3 --depth L3s3k \\
        --distilled L3 --depths student_depths_L3_stage3 --alpha 0.6 \\
        --curriculum work-out/student_stage3/stage2 work-out/student_stage3/stage3

With ``--reranker`` the reranker stage is exported beside the embedder (its vocabulary trimmed
by the same keep-list, so the two share one tokenizer file), and W, chosen on dev by
``bench/builtin_pipeline.py``, is the bundle's reranker weight.

A student distilled further from trained 12-layer teachers (``bench/student_distill.py
--init``) ships with ``--teacher-distilled`` naming each round's results, in order (the shipped
built-in):

    python bench/make_builtin.py \\
        --student work-out/teacher2_distill/student-student-stage3-distilled-distilled \\
        --depth F512s3t2 --distilled L3 --depths student_depths_teacher2_shipped --alpha 0.8 \\
        --alpha-for ja=0.5 --curriculum work-out/student_stage3/stage2 \\
        work-out/student_stage3/stage3 --narrowed L3s3k_F512 \\
        --after-narrowing work-out/narrow_stage3/stage3 --teacher-distilled teacher teacher2

``--card-only`` keeps the exported models and writes the card again (the card in the
manifest and ``README.md``, issue 23), then seals the manifest.

The alphas are the dev choices of ``bench/results/student_depths_L3.md`` (STARD best at 0.5,
ja_appi at 0.7). The export is deterministic: its ``embedder.onnx`` is the file those depth
results measured (same sha256).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from report import REPO, portable

DATA = REPO.parent / "shared" / "data"
DATASET_OF = {"zh": "stard", "ja": "ja_appi"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", type=Path)
    parser.add_argument("--depth", default="L3")
    parser.add_argument("--distilled", help="student_distill_<distilled>.json (default: "
                        "--depth)")
    parser.add_argument("--depths", help="results of bench/student_depths.py with the --depth "
                        "rows (default: student_depths_<depth>)")
    parser.add_argument("--curriculum", nargs="*", type=Path, default=[], metavar="STAGE_DIR",
                        help="curriculum stage folders trained on top of the distilled "
                             "student, in order (the last one is --student)")
    parser.add_argument("--narrowed", help="student_distill_<narrowed>.json: --student is the "
                        "curriculum model narrowed and distilled (bench/student_distill.py "
                        "--ffn-width)")
    parser.add_argument("--after-narrowing", nargs="*", type=Path, default=[],
                        metavar="STAGE_DIR",
                        help="curriculum stage folders trained on top of the narrowed model "
                             "(the last one is --student)")
    parser.add_argument("--teacher-distilled", nargs="*", default=[], metavar="DISTILLED",
                        help="student_distill_<DISTILLED>.json, one per round in order: "
                             "--student is the last stage distilled further from a trained "
                             "12-layer teacher (bench/student_distill.py --init)")
    parser.add_argument("--alpha", default="0.5")
    parser.add_argument("--alpha-for", action="append", default=[], metavar="ANALYZER=A")
    parser.add_argument("--reranker", type=Path, help="reranker stage folder")
    parser.add_argument("--rerank-weight", help="the reranker weight W chosen on dev")
    parser.add_argument("--pipeline", default="builtin_pipeline",
                        help="results of bench/builtin_pipeline.py for the card")
    parser.add_argument("--out", type=Path, default=REPO / "runtime" / "builtin")
    parser.add_argument("--card-only", action="store_true",
                        help="keep the exported models: write the card (manifest and "
                             "README.md) again from the results, and seal the manifest")
    args = parser.parse_args(argv)
    if not args.card_only and args.student is None:
        parser.error("--student is required (unless --card-only)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lexedge.runtime import model_card
    from lexedge.runtime.storage import (MANIFEST_HASH_FIELD, manifest_sha256, sha256_file,
                                         write_json_atomic)

    card = REPO / "bench" / "builtin_card.json"
    per_dataset = [f"{DATASET_OF[spec.split('=')[0]]}={spec.split('=')[1]}"
                   for spec in args.alpha_for]
    subprocess.run([sys.executable, str(REPO / "bench" / "builtin_card.py"), "--depth",
                    args.depth, "--alpha", args.alpha, "--alpha-for", *per_dataset,
                    *(["--distilled", args.distilled] if args.distilled else []),
                    *(["--depths", args.depths] if args.depths else []),
                    "--curriculum", *map(str, args.curriculum),
                    *(["--narrowed", f"student_distill_{args.narrowed}"] if args.narrowed
                      else []),
                    "--after-narrowing", *map(str, args.after_narrowing),
                    "--teacher-distilled", *(f"student_distill_{name}"
                                             for name in args.teacher_distilled),
                    *(["--reranker", args.pipeline] if args.reranker or args.card_only and
                      (args.out / "reranker.onnx").is_file() else []),
                    "--out", str(card)], check=True, stdout=subprocess.DEVNULL)
    export = [sys.executable, "-m", "lexedge", "export", "--int8", "--embedder",
              str(args.student), "--trim-vocabulary", *(str(DATA / name) for name in (
                  "stard", "ja_statutes", "ja_appi")), "--keep-script", "cjk",
              "--alpha", args.alpha, "--card", str(card), "--out", str(args.out)]
    for spec in args.alpha_for:
        export += ["--alpha-for", spec]
    if args.reranker:
        export += ["--reranker", str(args.reranker)]
        if args.rerank_weight:
            export += ["--rerank-weight", args.rerank_weight]
    if not args.card_only:
        subprocess.run(export, check=True)
    manifest_path = args.out / "manifest.json"
    manifest = portable(json.loads(manifest_path.read_text(encoding="utf-8")))
    manifest["card"] = json.loads(card.read_text(encoding="utf-8"))
    model_card.write(args.out / model_card.CARD_FILE, model_card.bundle_card(manifest))
    manifest["files"][model_card.CARD_FILE] = sha256_file(args.out / model_card.CARD_FILE)
    manifest[MANIFEST_HASH_FIELD] = manifest_sha256(manifest)
    write_json_atomic(manifest_path, manifest)
    print(f"{args.out}: manifest made portable and sealed again")
    return 0


if __name__ == "__main__":
    sys.exit(main())
