"""The import graph of lexedge's parts, read from the source (issue 18): dependencies point one
way (``tui → runtime``, ``export → trainer → runtime``), and no part's modules import each
other in a loop. An import inside a function counts like any other: it only defers the loop.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("runtime", "trainer", "export", "tui")
# The other parts each part may import.
MAY_IMPORT = {"runtime": set(), "trainer": {"runtime"}, "export": {"runtime", "trainer"},
              "tui": {"runtime"}}


def modules(part: str) -> dict[str, Path]:
    """``lexedge.<part>.<module>`` → its source file, subpackages included."""
    found = {}
    for path in sorted((ROOT / part).rglob("*.py")):
        names = list(path.relative_to(ROOT / part).with_suffix("").parts)
        if names[-1] == "__init__":
            names.pop()
        found[".".join(["lexedge", part, *names])] = path
    return found


def imported(name: str, path: Path) -> set[str]:
    """Every ``lexedge`` module ``path`` imports, at its top or inside a function
    (``from package import module`` names the module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m.startswith("lexedge.")}


def graph(part: str) -> dict[str, set[str]]:
    """Edges between the part's own modules (a package's ``__init__`` only when named)."""
    own = modules(part)
    return {name: {m for m in imported(name, path) if m in own and m != name
                   and m != f"lexedge.{part}"} for name, path in own.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One loop of ``edges`` (its modules in import order), or None."""
    state: dict[str, str] = {}
    trail: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        trail.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                return trail[trail.index(target):] + [target]
            if target not in state:
                loop = visit(target)
                if loop:
                    return loop
        state[node] = "done"
        trail.pop()
        return None

    for node in sorted(edges):
        if node not in state:
            loop = visit(node)
            if loop:
                return loop
    return None


@pytest.mark.parametrize("part", ["runtime", "trainer", "export", "tui"])
def test_no_import_cycle_within_a_part(part):
    loop = find_cycle(graph(part))
    assert loop is None, f"{part}: import cycle {' -> '.join(loop)}"


@pytest.mark.parametrize("part", PARTS)
def test_parts_depend_one_way(part):
    refused = {other for other in PARTS if other != part and other not in MAY_IMPORT[part]}
    wrong = sorted(f"{name} imports {target}" for name, path in modules(part).items()
                   for target in imported(name, path)
                   if target.split(".")[1] in refused)
    assert not wrong, f"{part} may import only {sorted(MAY_IMPORT[part])}: {wrong}"


def test_the_checker_reads_imports_inside_functions(tmp_path):
    source = tmp_path / "lora.py"
    source.write_text("def load():\n    from lexedge.trainer.stage import is_adapter\n"
                      "    from . import backbone\n", encoding="utf-8")
    found = imported("lexedge.trainer.lora", source)
    assert {"lexedge.trainer.stage", "lexedge.trainer.backbone"} <= found
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
