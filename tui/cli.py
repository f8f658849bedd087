"""``lexedge tui``: registers the subcommand; Textual is imported only when it runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from lexedge.runtime.cli import fraction, non_negative_int, positive_int


def add_commands(commands) -> None:
    tui = commands.add_parser(
        "tui", help="search an index interactively in the terminal",
        description="Search-as-you-type over IDX: results, the article with its neighbours, "
                    "the retrieval budget and reranking at a key. F1 lists every key.")
    tui.add_argument("--index", required=True, type=Path, help="index folder")
    tui.add_argument("--bundle", type=Path,
                     help="bundle folder (default: the one the index was built with)")
    tui.add_argument("--budget", type=positive_int, default=100,
                     help="initial retrieval budget K (default 100; [ and ] change it)")
    tui.add_argument("--rerank", type=non_negative_int, default=20,
                     help="candidates the reranker re-scores (default 20; 0 starts it off)")
    tui.add_argument("--alpha", type=fraction, default=0.5,
                     help="initial dense weight in the hybrid fusion (default 0.5)")
    tui.add_argument("--theme", choices=("dark", "light"), default="dark")
    tui.set_defaults(handler=run_tui)


def run_tui(args: argparse.Namespace) -> int:
    from .app import LexedgeApp
    from .settings import SearchSettings

    settings = SearchSettings(budget=args.budget, rerank=args.rerank > 0,
                              rerank_depth=args.rerank or 20, alpha=args.alpha)
    app = LexedgeApp(index_path=args.index, bundle=args.bundle, settings=settings)
    app.theme = f"textual-{args.theme}"
    app.run()
    return app.return_code or 0
