"""``lexedge export``: trained stages in, INT8 ONNX bundle out. Only argparse is imported here;
torch and onnx load when the command runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lexedge.runtime.builtin import describe


def add_commands(commands) -> None:
    from lexedge.runtime.cli import register_bundle_builder

    register_bundle_builder("default", export_default_bundle)
    export = commands.add_parser(
        "export", help="export an embedder (and reranker) as an INT8 ONNX bundle",
        description="Merge each stage's LoRA adapters into its base, export to ONNX, fuse "
                    "attention, quantise to INT8 and write a verified bundle. Parity with "
                    "the FP32 graph is measured on a calibration sample and gated.")
    precision = export.add_mutually_exclusive_group()
    precision.add_argument("--int8", dest="precision", action="store_const", const="int8",
                           help="dynamic INT8, per-channel weights (the default)")
    precision.add_argument("--fp32", dest="precision", action="store_const", const="fp32",
                           help="ship the FP32 graph instead")
    export.set_defaults(precision="int8")
    export.add_argument("--embedder", metavar="DIR|default",
                        help="embedder stage folder, or a base name: default (multilingual-"
                             "e5-small), e5-small, minilm (default: the selection's, else "
                             "default)")
    export.add_argument("--reranker", metavar="DIR",
                        help="reranker stage folder (default: the selection's, else none)")
    export.add_argument("--out", required=True, type=Path, help="bundle folder to write")
    export.add_argument("--force", action="store_true",
                        help="write the bundle even if a parity gate fails (recorded)")
    export.add_argument("--selection", type=Path,
                        help="selection.json of lexedge select: its embedder and reranker "
                             "stages are exported (unless --embedder/--reranker name others) "
                             "and it is recorded in the manifest")
    export.add_argument("--rerank-weight", type=float, metavar="W",
                        help="served order of the re-scored candidates: W x reranker + (1 - W)"
                             " x first stage (default: the selection's, else 1)")
    export.add_argument("--calibration", type=Path, metavar="DATA_DIR|corpus.jsonl",
                        help="parity sample source (default: the shipped statute sample)")
    export.add_argument("--min-cosine", type=float, default=0.99,
                        help="gate: mean cosine INT8 vs FP32 (default 0.99)")
    export.add_argument("--min-overlap", type=float, default=0.90,
                        help="gate: top-10 retrieval overlap INT8 vs FP32 (default 0.90)")
    export.add_argument("--min-spearman", type=float, default=0.98,
                        help="gate: reranker score Spearman INT8 vs FP32 (default 0.98)")
    export.add_argument("--per-tensor", action="store_true",
                        help="quantise with one scale per tensor instead of per channel")
    export.add_argument("--keep-fp32", action="append", default=[], choices=("ffn-output",),
                        help="leave a node group unquantised: ffn-output (FFN down-projections;"
                             " more accurate, about 18%% larger)")
    export.add_argument("--compare-per-tensor", action="store_true",
                        help="also measure per-tensor INT8 parity (recorded, not shipped)")
    export.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript",
                        help="torch.onnx exporter (default torchscript: attention fuses)")
    export.add_argument("--model-cache", type=Path,
                        help="where built-in base models are imported "
                             "(default $LEXEDGE_MODEL_CACHE or ~/.cache/lexedge/models)")
    export.add_argument("--threads", type=int, help="onnxruntime threads for the parity runs")
    export.add_argument("--trim-vocabulary", nargs="+", type=Path, default=[],
                        metavar="CORPUS|DATA_DIR",
                        help="keep only the tokenizer pieces these corpora (and a BEIR folder's "
                             "training queries) use, plus special tokens and every "
                             "one-character piece: a smaller model and tokenizer")
    export.add_argument("--keep-script", action="append", default=[], choices=("cjk",),
                        help="with --trim-vocabulary: keep every piece of this script too "
                             "(text the corpora never used keeps its pieces)")
    export.add_argument("--alpha", type=float, metavar="A",
                        help="the hybrid fusion's dense weight chosen for this embedder on dev:"
                             " the default of searches served by the bundle (default: the "
                             "selection's, else none recorded: 0.5)")
    export.add_argument("--alpha-for", action="append", default=[], metavar="ANALYZER=A",
                        type=_analyzer_alpha,
                        help="a dense weight for indexes of one analyzer (ja, zh, word), "
                             "chosen on that language's dev set; repeatable (others: --alpha)")
    export.add_argument("--card", type=Path, metavar="FILE.json",
                        help="a JSON object recorded as the bundle's card: languages, "
                             "training data, measured quality, licences (lexedge bundle info "
                             "shows it)")
    export.add_argument("--json", action="store_true",
                        help="print what was written as JSON (as lexedge bundle info --json, "
                             "plus the gates)")
    export.set_defaults(handler=run_export)
    add_late_interaction_command(commands)


def add_late_interaction_command(commands) -> None:
    late = commands.add_parser(
        "late-interaction", help="give a bundle a late-interaction reranker trained on its "
                                 "own embedder",
        description="Train a late-interaction (MaxSim) head over the bundle's INT8 token "
                    "states on each data set's training queries and their first-stage "
                    "candidates, choose the reranker weight per language on dev, and write "
                    "the bundle with it: the embedder files unchanged, plus reranker.onnx.")
    late.add_argument("--bundle", default="builtin", metavar="DIR|builtin",
                      help="the source bundle (default: builtin)")
    late.add_argument("--data", action="append", required=True, type=Path, metavar="DATA_DIR",
                      help="a BEIR folder with qrels/train.tsv and qrels/dev.tsv; repeatable")
    late.add_argument("--index", action="append", required=True, type=Path, metavar="INDEX",
                      help="each --data's corpus indexed with --bundle, in the same order")
    late.add_argument("--out", required=True, type=Path, help="bundle folder to write")
    late.add_argument("--epochs", type=int, help="passes over the training queries (default 3)")
    late.add_argument("--learning-rate", type=float, help="the head's (default 3e-4)")
    late.add_argument("--dimension", type=int, metavar="D",
                      help="the width of the projected token states (default: the "
                           "embedder's; narrower starts from their principal directions)")
    late.add_argument("--candidates", type=int, metavar="N",
                      help="first-stage candidates re-scored (default: the served 20)")
    late.add_argument("--passage-max-length", type=int, metavar="TOKENS",
                      help="tokens of a passage read in training, and when re-ranking for a "
                           "language no --data spoke for (default: the embedder's)")
    late.add_argument("--passage-caps", type=int, nargs="+", metavar="TOKENS",
                      help="shorter passage lengths to try per language on dev (fewer tokens "
                           "re-rank faster; default: 64 96 128 192 256, those below "
                           "--passage-max-length)")
    late.add_argument("--card", type=Path, metavar="FILE.json",
                      help="the bundle's card (default: the source bundle's)")
    late.set_defaults(handler=run_late_interaction)


def run_late_interaction(args: argparse.Namespace) -> int:
    from lexedge.trainer.late_interaction import HeadConfig

    from .late_interaction import LateInteractionConfig, build_late_interaction_bundle

    given = {name: value for name, value in (("epochs", args.epochs),
                                             ("learning_rate", args.learning_rate),
                                             ("dimension", args.dimension))
             if value is not None}
    config = LateInteractionConfig(
        bundle=args.bundle, data=tuple(args.data), indexes=tuple(args.index), out=args.out,
        head=HeadConfig(**given), passage_max_length=args.passage_max_length, card=args.card,
        **({"candidates": args.candidates} if args.candidates is not None else {}),
        **({"passage_caps": tuple(args.passage_caps)} if args.passage_caps else {}))
    bundle = build_late_interaction_bundle(
        config, log=lambda line: print(line, file=sys.stderr, flush=True))
    entry = bundle.manifest["reranker"]
    print(f"wrote {bundle.path} (reranker.onnx "
          f"{(bundle.path / entry['file']).stat().st_size / 1e6:.1f} MB; rerank weight "
          f"{entry['rerank_weight']}, by analyzer {entry['rerank_weight_by_analyzer']}; "
          f"passage tokens by analyzer {entry['passage_max_length_by_analyzer']}; "
          f"{entry['export_seconds']} s)")
    return 0


def _analyzer_alpha(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep or name not in ("ja", "zh", "word"):
        raise argparse.ArgumentTypeError(f"{text}: expected ANALYZER=A, ANALYZER one of ja, "
                                         "zh, word")
    try:
        weight = float(value)
    except ValueError:
        weight = -1.0
    if not 0.0 <= weight <= 1.0:
        raise argparse.ArgumentTypeError(f"{text}: A must be a number within [0, 1]")
    return name, weight


def export_default_bundle(out: Path) -> None:
    """The offline multilingual-e5-small as an INT8 embedder-only bundle, default gates."""
    from .bundle import ExportConfig, export_bundle

    export_bundle(ExportConfig(out=out, embedder="default", precision="int8"),
                  log=lambda line: print(line, file=sys.stderr, flush=True))


def run_export(args: argparse.Namespace) -> int:
    from .bundle import ExportConfig, export_bundle
    from .parity import Gates

    embedder, reranker = args.embedder, args.reranker
    if args.selection:
        from lexedge.trainer.selection.select import read_selection

        selection = read_selection(args.selection)
        embedder = embedder or selection["embedder"]["path"]
        reranker = reranker or (selection["reranker"] or {}).get("path")
    config = ExportConfig(
        out=args.out, embedder=embedder or "default", reranker=reranker,
        precision=args.precision,
        force=args.force, selection=args.selection, rerank_weight=args.rerank_weight,
        calibration=args.calibration,
        gates=Gates(min_mean_cosine=args.min_cosine, min_top10_overlap=args.min_overlap,
                    min_spearman=args.min_spearman),
        per_channel=not args.per_tensor, keep_fp32=tuple(args.keep_fp32),
        compare_per_tensor=args.compare_per_tensor,
        exporter=args.exporter, model_cache=args.model_cache, threads=args.threads,
        trim_vocabulary=tuple(args.trim_vocabulary), keep_scripts=tuple(args.keep_script),
        card=args.card, alpha=args.alpha, alpha_by_analyzer=dict(args.alpha_for))
    bundle = export_bundle(config, log=lambda line: print(line, file=sys.stderr, flush=True))
    manifest = bundle.manifest
    if args.json:
        print(json.dumps({**describe(bundle), "gates": manifest["gates"],
                          "seconds": manifest["export"]["seconds"]}, ensure_ascii=False,
                         indent=2))
        return 0
    sizes = ", ".join(f"{name} {(bundle.path / name).stat().st_size / 1e6:.1f} MB"
                      for name in manifest["files"] if name.endswith(".onnx"))
    print(f"wrote {bundle.path} ({sizes}; gates {manifest['gates']['status']}, "
          f"{manifest['export']['seconds']} s)")
    return 0
