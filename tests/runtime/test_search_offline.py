"""Searching never imports torch or transformers (nor scipy) and never opens a socket (the laptop
path)."""

import json
import subprocess
import sys
import textwrap

import pytest


def run_isolated(code: str, cwd) -> dict:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, check=True, cwd=cwd)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_search_never_imports_torch(tiny_dataset, tmp_path):
    report = run_isolated(f"""
        import json, sys
        from lexedge.cli import main
        main(["index", "build", "--docs", {str(tiny_dataset)!r}, "--out", {str(tmp_path / 'i')!r}])
        main(["search", "損害賠償", "--index", {str(tmp_path / 'i')!r}])
        main(["eval", {str(tiny_dataset)!r}])
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
        print(json.dumps(heavy))
    """, cwd=tmp_path)
    assert report == []


def test_a_search_does_not_load_scipy_and_leaves_it_importable(tiny_dataset, tmp_path):
    # bm25s imports scipy.sparse for a backend lexedge never uses: 134 ms of a cold search
    pytest.importorskip("scipy")
    report = run_isolated(f"""
        import json, sys
        from lexedge.cli import main
        main(["index", "build", "--docs", {str(tiny_dataset)!r}, "--out", {str(tmp_path / 'i')!r}])
        main(["search", "損害賠償", "--index", {str(tmp_path / 'i')!r}])
        loaded = "scipy.sparse" in sys.modules
        import scipy.sparse
        print(json.dumps([loaded, scipy.sparse.csc_matrix.__name__]))
    """, cwd=tmp_path)
    assert report == [False, "csc_matrix"]


def test_search_opens_no_socket(tiny_dataset, tmp_path):
    """Python's own socket module, refused: catches a Python library reaching a hub, and runs
    where strace is missing. Native code (onnxruntime's telemetry) goes around it; the
    system-call proof is ``test_no_telemetry.py`` (issue 20, finding 2)."""
    report = run_isolated(f"""
        import json, socket
        attempts = []
        class NoSocket(socket.socket):
            def __init__(self, *args, **kwargs):
                attempts.append(args)
                raise OSError("network disabled in this test")
        socket.socket = NoSocket
        socket.create_connection = lambda *a, **k: attempts.append(a) or NoSocket()
        from lexedge.cli import main
        main(["index", "build", "--docs", {str(tiny_dataset)!r}, "--out", {str(tmp_path / 'i')!r}])
        main(["search", "損害賠償", "--index", {str(tmp_path / 'i')!r}, "--json"])
        print(json.dumps(len(attempts)))
    """, cwd=tmp_path)
    assert report == 0
