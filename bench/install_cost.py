"""What installing lexedge costs on a fresh machine (issues 19 and 23): for the base install
(runtime + TUI, the laptop's) and the base install with the office service, a new virtual
environment, ``pip install --no-cache-dir`` from this checkout (packages from the registry, no
compiler), its time and size; then, on the base install, the README's first command: the demo
indexes the shipped sample with the built-in bundle and answers.

    python bench/install_cost.py

Writes ``bench/results/install_cost.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from compute_bound import _cpu_flags
from lock_fsync_cost import cpu_model
from report import REPO, write_report

DEMO_QUERY = "本人の同意を得ないで個人データを第三者に提供してよいか"


def folder_mb(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()
                     and not p.is_symlink()) / 1e6, 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name, spec in (("base (runtime + TUI)", "."), ("base + [serve]", ".[serve]")):
            venv = Path(work) / name.split()[0].strip("+")
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            python = venv / "bin" / "python"
            started = time.perf_counter()
            subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-cache-dir",
                            spec], cwd=REPO, check=True, capture_output=True)
            seconds = time.perf_counter() - started
            torch = subprocess.run([str(python), "-c", "import torch"],
                                   capture_output=True).returncode == 0
            row = {"install": name, "seconds": round(seconds, 1), "mb": folder_mb(venv),
                   "torch": torch}
            if spec == ".":
                started = time.perf_counter()
                demo = subprocess.run([str(venv / "bin" / "lexedge"), "demo", DEMO_QUERY,
                                       "--out", str(Path(work) / "demo")], check=True,
                                      capture_output=True, text=True)
                row["demo_seconds"] = round(time.perf_counter() - started, 1)
                row["demo_first_hit"] = next(line.strip() for line in demo.stdout.splitlines()
                                             if line.strip().startswith("1."))
            rows.append(row)
            print(row, flush=True)
    results = {"cpu": cpu_model(), "flags": _cpu_flags(), "cores": os.cpu_count(),
               "python": sys.version.split()[0], "rows": rows}
    base = rows[0]
    lines = [
        "# Installing lexedge on a fresh machine (one run)", "",
        f"CPU: {results['cpu']} ({results['flags']}), {results['cores']} cores; Python "
        f"{results['python']}. Each install: a new virtual environment, `pip install "
        "--no-cache-dir` from the checkout, packages from the registry (wheels only, "
        "`ipadic`'s data aside: no compiler).", "",
        "| install | seconds | size MB | torch installed |", "|---|---|---|---|",
        *[f"| {r['install']} | {r['seconds']} | {r['mb']} | {'yes' if r['torch'] else 'no'} |"
          for r in rows], "",
        f"The README's first command on the base install (`lexedge demo \"{DEMO_QUERY}\" --out "
        f"demo`: index the shipped 3,610-article sample with the built-in bundle, answer): "
        f"**{base['demo_seconds']} s**; install and demo together "
        f"**{base['seconds'] + base['demo_seconds']:.0f} s**. First hit: "
        f"`{base['demo_first_hit'][:60]}…`", "",
        "Reproduce: `python bench/install_cost.py`.",
    ]
    write_report(args.out, "install_cost", results, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
