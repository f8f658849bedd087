"""On the base install (no torch, no onnx), the commands that need an extra end in one line
naming it, exit 2, never a ModuleNotFoundError traceback (issue 23)."""

import subprocess
import sys
import textwrap

import pytest

BLOCK = """
import sys
class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Missing())
from lexedge.cli import main
sys.exit(main({argv!r}))
"""


def run_without(blocked: set, argv: list, cwd) -> subprocess.CompletedProcess:
    code = BLOCK.format(blocked=blocked, argv=argv)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, cwd=cwd)


@pytest.mark.parametrize("argv, extra", [
    (["export", "--int8", "--embedder", "default", "--out", "b"], "train"),
    (["train", "student", "--teacher", "default", "--layers", "0,11", "--data", ".",
      "--out", "s"], "train"),
    (["demo", "--out", "d", "--bundle", "default"], "train"),
    (["eval", "DATA", "--method", "dense", "--model", "m"], "train"),
])
def test_a_command_without_its_extra_names_the_extra(tiny_dataset, tmp_path, argv, extra):
    argv = [str(tiny_dataset) if a == "DATA" else a for a in argv]
    result = run_without({"torch", "transformers", "onnx"}, argv, tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"needs the [{extra}] extra" in result.stderr
    assert f"pip install 'lexedge[{extra}]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_without_its_extra_names_the_extra(tmp_path):
    result = run_without({"starlette", "uvicorn"}, ["serve", "--index", "idx"], tmp_path)
    assert result.returncode == 2
    assert "needs the [serve] extra" in result.stderr and "Traceback" not in result.stderr
