"""Trainer subcommands: ``lexedge train embedder``. Only argparse is imported here; torch
loads when a handler runs, so ``lexedge search`` never pays for it."""

from __future__ import annotations

import argparse


def add_commands(commands) -> None:
    """Register ``train`` and make ``lexedge eval --method dense --model DIR`` work."""
    train = commands.add_parser("train", help="train models (needs lexedge[train])")
    models = train.add_subparsers(dest="train_command", required=True, metavar="MODEL")
    embedder = models.add_parser(
        "embedder", help="MLM pretraining and the three-stage curriculum for the embedder",
        description="Train the embedder: phase mlm (continued MLM pretraining), stage 1 "
                    "(weak pairs + BM25 negatives), stage 2 (negatives mined with stage 1), "
                    "stage 3 (negatives re-mined every epoch). Every stage is a LoRA adapter "
                    "on the merged stages below it, evaluated on the dev split.")
    embedder.add_argument("--config", required=True, metavar="FILE",
                          help="TOML or YAML file of TrainEmbedderConfig fields")
    embedder.add_argument("--set", dest="overrides", action="append", default=[],
                          metavar="KEY=VALUE",
                          help="override one field, e.g. stage2.steps=100 (repeatable)")
    embedder.add_argument("--phases", help="comma-separated subset of mlm,1,2,3 "
                                           "(default: the config's phases)")
    embedder.add_argument("--resume", action="store_true",
                          help="continue an interrupted run from its last checkpoint")
    embedder.set_defaults(handler=run_train_embedder)

    from lexedge.runtime.evaluation import register_method

    register_method("dense-model", _dense_model_factory)


def _dense_model_factory(config, dataset):
    from lexedge.trainer.retrieval import dense_model_retriever

    return dense_model_retriever(config, dataset)


def run_train_embedder(args: argparse.Namespace) -> int:
    from lexedge.trainer.config import TrainEmbedderConfig, load_config
    from lexedge.trainer.curriculum import Curriculum
    from lexedge.trainer.embedder import EmbedderFamily

    overrides = list(args.overrides)
    if args.phases:
        overrides.append(f"phases={args.phases}")
    config = load_config(TrainEmbedderConfig, args.config, overrides)
    summary = Curriculum(config, EmbedderFamily, resume=args.resume).run()
    for name, metrics in summary["metrics"].items():
        print(f"{name:>7}: recall@10 {metrics['recall@10']:.4f}  recall@100 "
              f"{metrics['recall@100']:.4f}  mrr@10 {metrics['mrr@10']:.4f}  "
              f"ndcg@10 {metrics['ndcg@10']:.4f}")
    print(f"run folder: {config.output_dir}")
    return 0
