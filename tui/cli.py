"""``lexedge tui``: registers the subcommand; Textual is imported only when it runs."""

from __future__ import annotations

import argparse

from lexedge.runtime.cli import add_index_or_server, add_search_settings, search_settings

from .settings import tui_defaults

#: The search settings the command line sets; the rest are set on screen (filters) or fixed.
TUI_SETTINGS = ("budget", "pool", "rerank", "rerank_weight", "rerank_tokens", "alpha", "fusion")


def add_commands(commands) -> None:
    tui = commands.add_parser(
        "tui", help="search an index interactively in the terminal",
        description="Search-as-you-type over an index (--index) or a running service "
                    "(--server): results, the article with its neighbours, the retrieval "
                    "budget ([ and ]), reranking (Ctrl-R; --rerank 0 starts it off) and alpha "
                    "({ and }) at a key. F1 lists every key.")
    add_index_or_server(tui)
    tui.add_argument("--bundle", metavar="builtin|DIR",
                     help="bundle: 'builtin' or a folder (default: the one the index was built "
                          "with)")
    add_search_settings(tui, defaults=tui_defaults(), names=TUI_SETTINGS)
    tui.add_argument("--theme", choices=("dark", "light"), default="dark")
    tui.set_defaults(handler=run_tui)


def run_tui(args: argparse.Namespace) -> int:
    from .app import LexedgeApp

    app = LexedgeApp(index_path=args.index, bundle=args.bundle, server=args.server,
                     token_file=args.token_file, settings=search_settings(args, tui_defaults()))
    app.theme = f"textual-{args.theme}"
    app.run()
    return app.return_code or 0
