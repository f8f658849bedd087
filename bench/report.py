"""How every bench writes its results: JSON and Markdown in ``bench/results/``, with the
paths of this machine made portable (the repository's own paths relative to it, the shared
data as ``../shared``, the home folder as ``~``), so a committed result names no machine."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def portable(value):
    """``value`` (JSON-like) with this machine's absolute paths rewritten as described above."""
    if isinstance(value, dict):
        return {key: portable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(item) for item in value]
    if isinstance(value, str):
        for prefix, short in ((f"{REPO}/", ""), (str(REPO.parent / "shared"), "../shared"),
                              (str(Path.home()), "~")):
            value = value.replace(prefix, short)
    return value


def metric_cells(metrics: dict) -> str:
    """R@10, R@100, MRR@10 and nDCG@10 as Markdown table cells (``a | b | c | d``)."""
    return " | ".join(f"{metrics[name]:.4f}"
                      for name in ("recall@10", "recall@100", "mrr@10", "ndcg@10"))


def write_json_result(path: Path, results) -> None:
    """Write ``results`` to ``path`` as JSON, atomically and with portable paths."""
    from lexedge.runtime.storage import write_json_atomic

    write_json_atomic(path, portable(results))


def write_markdown_result(path: Path, text: str) -> None:
    path.write_text(portable(text), encoding="utf-8")


def write_report(out: Path, name: str, results: dict, lines: list[str]) -> None:
    """Write ``out/name.json`` and ``out/name.md``; print the Markdown."""
    write_json_result(out / f"{name}.json", results)
    write_markdown_result(out / f"{name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
