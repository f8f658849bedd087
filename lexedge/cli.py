"""The ``lexedge`` command. Each part registers its own subcommands; a subcommand imports its
part's heavy modules only when it runs, so ``lexedge search`` never loads torch."""

from __future__ import annotations

import argparse
import os
import sys

from lexedge import __version__


def build_parser() -> argparse.ArgumentParser:
    from lexedge.runtime import cli as runtime_cli

    parser = argparse.ArgumentParser(
        prog="lexedge", description="Offline hybrid legal search: evaluate, index, search.")
    parser.add_argument("--version", action="version", version=f"lexedge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    runtime_cli.add_commands(commands)
    try:  # `lexedge train` and `eval --model`; torch is imported only when they run
        from lexedge.trainer import cli as trainer_cli
    except ImportError:
        trainer_cli = None
    if trainer_cli is not None:
        trainer_cli.add_commands(commands)
    try:  # a laptop install has no lexedge.export; the runtime commands still work
        from lexedge.export import cli as export_cli
    except ImportError:
        export_cli = None
    if export_cli is not None:
        export_cli.add_commands(commands)
    try:  # the terminal UI: argparse only here, Textual is imported when `lexedge tui` runs
        from lexedge.tui import cli as tui_cli
    except ImportError:
        tui_cli = None
    if tui_cli is not None:
        tui_cli.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    from lexedge.runtime.errors import LexedgeError

    # Every model comes from a local path: never let a library wait on a hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except LexedgeError as exc:
        print(f"lexedge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lexedge: interrupted", file=sys.stderr)
        return 130
