"""`lexedge tui` is registered, and parsing the command line does not import Textual."""

import subprocess
import sys


def test_tui_subcommand_parses_without_importing_textual():
    code = ("import sys; from lexedge.cli import build_parser; "
            "args = build_parser().parse_args(['tui', '--index', 'idx', '--budget', '200']); "
            "assert args.budget == 200 and args.handler.__name__ == 'run_tui'; "
            "assert 'textual' not in sys.modules, 'textual imported at parse time'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tui_never_imports_torch():
    code = ("import sys; import lexedge.tui.app; "
            "assert not any(m.split('.')[0] in ('torch', 'transformers') for m in sys.modules); "
            "assert not any(m.startswith(('lexedge.trainer', 'lexedge.export')) "
            "for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
