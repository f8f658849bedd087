"""Trainer subcommands: ``lexedge train embedder|reranker``, ``lexedge grid`` and ``lexedge
select``, plus the trainer's ``lexedge eval`` methods (:mod:`lexedge.trainer.eval_methods`).
Only argparse, that registry and the runtime's search settings are imported here; each
handler imports its modules (and torch) when it runs, so ``lexedge search`` never pays for
them."""

from __future__ import annotations

import argparse

from lexedge.runtime.cli import add_search_settings
from lexedge.runtime.settings import DEFAULT_ALPHA
from lexedge.trainer import eval_methods


def add_commands(commands) -> None:
    """Register ``train``, ``grid`` and ``select``, and make ``lexedge eval --method dense
    --model DIR`` and ``--method rerank --model DIR`` work."""
    train = commands.add_parser("train", help="train models (needs lexedge[train])")
    models = train.add_subparsers(dest="train_command", required=True, metavar="MODEL")
    embedder = models.add_parser(
        "embedder", help="MLM pretraining and the three-stage curriculum for the embedder",
        description="Train the embedder: phase mlm (continued MLM pretraining), stage 1 "
                    "(weak pairs + BM25 negatives), stage 2 (negatives mined with stage 1), "
                    "stage 3 (negatives re-mined every epoch). Every stage is a LoRA adapter "
                    "on the merged stages below it, evaluated on the dev split.")
    _curriculum_arguments(embedder, "TrainEmbedderConfig")
    embedder.set_defaults(handler=run_train, family="embedder")
    reranker = models.add_parser(
        "reranker", help="the cross-encoder reranker through the same three stages",
        description="Train the reranker (a cross-encoder with a fresh one-logit head, listwise "
                    "loss): stage 1 (BM25 and random negatives), stage 2 (the candidates of "
                    "the configured embedder), stage 3 (those candidates re-ranked by the "
                    "current reranker every epoch: its own mistakes). Every stage is a LoRA "
                    "adapter (head saved in full), evaluated on the dev split by re-ranking "
                    "the embedder's top candidates.")
    _curriculum_arguments(reranker, "TrainRerankerConfig")
    reranker.set_defaults(handler=run_train, family="reranker")
    add_student_command(models)

    grid = commands.add_parser(
        "grid", help="measure every embedder stage x reranker stage x budget end to end",
        description="Pipeline embedder@K -> reranker for every pair of finished stages of "
                    "two runs, at budgets K, with the first stage dense and fused with BM25; "
                    "writes OUT/grid.json (needs lexedge[train]).")
    grid.add_argument("--embedders", required=True, metavar="RUN_DIR",
                      help="lexedge train embedder's output_dir")
    grid.add_argument("--rerankers", required=True, metavar="RUN_DIR",
                      help="lexedge train reranker's output_dir")
    grid.add_argument("--out", required=True, metavar="DIR", help="grid folder to write")
    grid.add_argument("--data", dest="data_dir", default="", metavar="DATA_DIR",
                      help="BEIR folder (default: the reranker run's)")
    grid.add_argument("--split", default="dev", help="qrels split (default: dev)")
    grid.add_argument("--budgets", default="20,60,100", help="budgets K (default 20,60,100)")
    # the fused first stage's dense weight: the served setting, its default and check
    add_search_settings(grid, names=("alpha",))
    grid.add_argument("--rerank-weights", default="1,0.5,0.3,0.2,0.1", metavar="W,W,...",
                      help="reranker weights W against the first stage's scores, each a row "
                           "..._w<W> (1: the reranker alone; default 1,0.5,0.3,0.2,0.1)")
    grid.add_argument("--no-base", dest="include_base", action="store_false",
                      help="leave the embedder run's base model out")
    grid.add_argument("--embedder-stages", default="", metavar="S,S,...",
                      help="measure only these embedder stages (0 the base, mlm, 1, 2, 3; "
                           "default: all); fewer first stages, fewer pairs to re-score")
    grid.add_argument("--device", default="auto", help="auto, cpu or cuda")
    grid.add_argument("--batch-size", type=int, default=32)
    grid.set_defaults(handler=run_grid_command)

    select = commands.add_parser(
        "select", help="choose each component's stage from a grid (writes selection.json)",
        description="Read RUNS/grid.json and write RUNS/selection.json: the embedder stage by "
                    "its own Recall@K at the serving budget, dense or BM25-fused first stage "
                    "by the same metric, the reranker stage and its weight against the first "
                    "stage by end-to-end nDCG@10. lexedge export --selection consumes it.")
    select.add_argument("--runs", required=True, metavar="GRID_DIR",
                        help="the folder lexedge grid wrote")
    # the serving budget K the stages are chosen for: the served setting, default and check
    add_search_settings(select, names=("budget",))
    select.add_argument("--embedder-metric", default="",
                        help="embedder rule metric (default recall@K)")
    select.add_argument("--reranker-metric", default="ndcg@10",
                        help="reranker rule metric (default ndcg@10)")
    select.set_defaults(handler=run_select)
    eval_methods.register()


def _curriculum_arguments(parser, config_class: str) -> None:
    parser.add_argument("--config", required=True, metavar="FILE",
                        help=f"TOML or YAML file of {config_class} fields")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override one field, e.g. stage2.steps=100 (repeatable)")
    parser.add_argument("--phases", help="comma-separated subset of the phases (mlm,1,2,3 for "
                                         "the embedder, 1,2,3 for the reranker)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run from its last checkpoint")


def add_student_command(models) -> None:
    student = models.add_parser(
        "student", help="a shallower embedder distilled from a teacher (a laptop model)",
        description="Cut a student from the teacher's --layers, then distil: the teacher's "
                    "vectors (every text), its scores over each training query's in-batch "
                    "positives and BM25 hard negatives (KL), and the training judgments "
                    "(InfoNCE). Writes a model folder lexedge export takes as --embedder.")
    student.add_argument("--teacher", default="default",
                         help="teacher embedder: a model or stage folder, or a built-in base "
                              "name (default: default, multilingual-e5-small)")
    student.add_argument("--layers", required=True, metavar="I,J,...",
                         help="teacher layers (0-based) that start the student's layers")
    student.add_argument("--data", nargs="+", required=True, metavar="DATA_DIR",
                         help="BEIR folders whose train judgments give the triples")
    student.add_argument("--passages", nargs="*", default=[], metavar="CORPUS|DATA_DIR",
                         help="corpora whose random passages keep the student near the "
                              "teacher on text without queries")
    student.add_argument("--per-corpus", type=int, default=1000,
                         help="passages drawn from each --passages corpus (default 1000)")
    student.add_argument("--ffn-width", type=int, metavar="N",
                         help="narrow every kept layer's feed-forward block to its N most "
                              "important units on the --passages (default: keep them all)")
    student.add_argument("--out", required=True, help="model folder to write")
    student.add_argument("--epochs", type=int, default=2)
    student.add_argument("--batch-size", type=int, default=16)
    student.add_argument("--learning-rate", type=float, default=1e-4)
    student.add_argument("--passage-length", type=int, default=256)
    student.add_argument("--seed", type=int, default=13)
    student.set_defaults(handler=run_train_student)


def run_train_student(args: argparse.Namespace) -> int:
    import shutil
    from pathlib import Path

    import numpy as np

    from lexedge.runtime.errors import LexedgeError
    from lexedge.runtime.storage import refuse_foreign
    from lexedge.trainer.base_models import resolve_base_model
    from lexedge.trainer.lora import default_model_cache
    from lexedge.trainer.student import (DistillSettings, distill, make_student, mine_triples,
                                         sample_passages)

    try:
        layers = tuple(int(part) for part in args.layers.split(","))
    except ValueError:
        raise LexedgeError(f"--layers {args.layers}: expected comma-separated integers") \
            from None
    settings = DistillSettings(layers=layers, epochs=args.epochs, batch_size=args.batch_size,
                               learning_rate=args.learning_rate,
                               passage_length=args.passage_length, seed=args.seed).validate()
    out = Path(args.out)
    refuse_foreign(out, "model")  # before the long run
    rng = np.random.default_rng(args.seed)
    triples = []
    for folder in args.data:
        found, info = mine_triples(folder, seed=rng)
        print(f"{folder}: {info['triples']} triples from {info['queries']} train queries "
              f"over {info['corpus']:,} articles", flush=True)
        triples += found
    used = {text for t in triples for text in (t.positive, t.negative)}
    passages = [text for corpus in args.passages
                for text in sample_passages(corpus, args.per_corpus, seed=rng, exclude=used)]
    teacher = resolve_base_model(args.teacher, default_model_cache())
    init = out.parent / f".{out.name}.init"  # the cut, before training; removed after
    try:
        make_student(teacher, init, layers, ffn_width=args.ffn_width,
                     calibration=passages or [t.positive for t in triples],
                     calibration_length=args.passage_length)
        stats = distill(init, teacher, triples, passages, out, settings)
    finally:
        shutil.rmtree(init, ignore_errors=True)
    last = stats["epochs"][-1]
    print(f"wrote {out}: {len(layers)} layers from teacher layers {list(layers)}; last epoch "
          f"loss {last['loss']:.4f} (embedding {last['embedding']:.4f}, score "
          f"{last['score']:.4f}); teacher {stats['teacher_seconds']} s, training "
          f"{stats['train_seconds']} s")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from lexedge.trainer.config import TrainEmbedderConfig, TrainRerankerConfig
    from lexedge.trainer.config_loader import load_config
    from lexedge.trainer.curriculum import Curriculum

    if args.family == "reranker":
        from lexedge.trainer.reranker.family import RerankerFamily as family
        config_class = TrainRerankerConfig
    else:
        from lexedge.trainer.embedder.family import EmbedderFamily as family
        config_class = TrainEmbedderConfig
    overrides = list(args.overrides)
    if args.phases:
        overrides.append(f"phases={args.phases}")
    config = load_config(config_class, args.config, overrides)
    summary = Curriculum(config, family, resume=args.resume).run()
    for name, metrics in summary["metrics"].items():
        print(f"{name:>7}: recall@10 {metrics['recall@10']:.4f}  recall@100 "
              f"{metrics['recall@100']:.4f}  mrr@10 {metrics['mrr@10']:.4f}  "
              f"ndcg@10 {metrics['ndcg@10']:.4f}")
    print(f"run folder: {config.output_dir}")
    return 0


def run_grid_command(args: argparse.Namespace) -> int:
    from lexedge.runtime.errors import LexedgeError
    from lexedge.trainer.selection.grid import GridConfig, run_grid

    try:
        budgets = sorted({int(b) for b in args.budgets.split(",") if b.strip()})
    except ValueError:
        raise LexedgeError(f"--budgets {args.budgets!r}: expected integers like 20,60,100") \
            from None
    if not budgets or budgets[0] < 1:
        raise LexedgeError(f"--budgets {args.budgets!r}: budgets must be positive")
    try:
        weights = [float(w) for w in args.rerank_weights.split(",") if w.strip()]
    except ValueError:
        raise LexedgeError(f"--rerank-weights {args.rerank_weights!r}: expected numbers like "
                           "1,0.3") from None
    grid = run_grid(GridConfig(embedders=args.embedders, rerankers=args.rerankers,
                               out=args.out, data_dir=args.data_dir, split=args.split,
                               budgets=budgets,
                               alpha=DEFAULT_ALPHA if args.alpha is None else args.alpha,
                               rerank_weights=weights,
                               include_base=args.include_base, device=args.device,
                               embedder_stages=[x.strip() for x in
                                                args.embedder_stages.split(",") if x.strip()],
                               batch_size=args.batch_size))
    for name, row in grid.items():
        if name != "setup":
            print(f"{name:>24}: recall@{budgets[-1]} {row[f'recall@{budgets[-1]}']:.4f}  "
                  f"mrr@10 {row['mrr@10']:.4f}  ndcg@10 {row['ndcg@10']:.4f}")
    print(f"wrote {args.out}/grid.json")
    return 0


def run_select(args: argparse.Namespace) -> int:
    from lexedge.trainer.selection.select import SelectionRules, select_stages

    selection = select_stages(args.runs, SelectionRules(
        budget=args.budget, embedder_metric=args.embedder_metric,
        reranker_metric=args.reranker_metric))
    end = selection["end_to_end"]
    reranker = selection["reranker"]
    chosen = f"reranker stage {reranker['stage']} (weight {reranker['rerank_weight']:g})" \
        if reranker else \
        f"no reranker ({selection['reranker_rejected']['reason']})"
    print(f"embedder stage {selection['embedder']['stage']} ({selection['first_stage']}), "
          f"{chosen} at K = {selection['budget']}: mrr@10 {end['mrr@10']:.4f}, "
          f"ndcg@10 {end['ndcg@10']:.4f}")
    print(f"wrote {args.runs}/selection.json")
    return 0
