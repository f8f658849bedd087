"""Save an SVG screenshot of the TUI answering one query (for the docs)::

    python -m lexedge.tui.screenshot --index /tmp/idx-ja --query 解雇の予告 \\
        --out docs/screenshots/tui_ja.svg

Latency is masked so that the picture is the same on every machine.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from .app import LexedgeApp


async def screenshot(index: Path, query: str, size: tuple[int, int], theme: str) -> str:
    app = LexedgeApp(index_path=index, test_mode=True)
    async with app.run_test(size=size) as pilot:
        app.theme = f"textual-{theme}"
        await app.workers.wait_for_complete()
        await pilot.pause()
        app.query_one("#query").value = query
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause(0.2)
        return app.export_screenshot(title=f"lexedge tui --index {index.name}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True, type=Path)
    parser.add_argument("--query", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--size", default="100x30", help="COLUMNSxROWS (default 100x30)")
    parser.add_argument("--theme", choices=("dark", "light"), default="dark")
    args = parser.parse_args(argv)
    columns, rows = (int(n) for n in args.size.split("x"))
    svg = asyncio.run(screenshot(args.index, args.query, (columns, rows), args.theme))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(svg, encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
