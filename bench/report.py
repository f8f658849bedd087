"""The ending every bench shares: the results as JSON and the table as Markdown in
``bench/results/``, and the table on the terminal."""

from __future__ import annotations

from pathlib import Path


def write_report(out: Path, name: str, results: dict, lines: list[str]) -> None:
    """Write ``out/name.json`` (atomically) and ``out/name.md``; print the Markdown."""
    from lexedge.runtime.storage import write_json_atomic

    write_json_atomic(out / f"{name}.json", results)
    (out / f"{name}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
