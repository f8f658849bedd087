"""No lexedge process opens a network socket, or lets onnxruntime write its telemetry files,
seen at the system-call level (issue 20, finding 2).

onnxruntime >= 1.29 ships 1DS telemetry on Linux, in native code that Python's ``socket``
module never sees: its import writes ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/`` and,
about 10 s later, resolves ``mobile.events.data.microsoft.com``. So the served path runs under
``strace -f``, with an onnxruntime session kept alive well past that delay, each process with
an empty ``HOME`` of its own and a stray ``ORT_DISABLE_TELEMETRY=0`` that lexedge must override.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

#: onnxruntime 1.32's uploader first resolved its endpoint ~10 s after ``import onnxruntime``
#: and again every few seconds; a session kept this long would show it three times over.
SESSION_ALIVE_S = 30
#: Every network system call strace knows (socket, connect, sendto, sendmsg, bind, …).
TRACED = "trace=network"
#: What a shell profile or a container image might leave behind; lexedge must force it to 1.
STRAY_ENVIRONMENT = {"ORT_DISABLE_TELEMETRY": "0"}
QUERY = "他人の権利を侵害した損害"


def strace_or_skip(tmp_path: Path) -> str:
    """The strace binary, once it has shown that it sees a socket a Python child makes."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (apt-get install strace): the system-call proof "
                    "that onnxruntime's native telemetry stays off cannot run")
    probe = tmp_path / "probe.trace"
    result = subprocess.run(
        [strace, "-f", "-qq", "-e", TRACED, "-e", "signal=none", "-o", str(probe),
         sys.executable, "-c", "import socket; socket.socket(socket.AF_UNIX).close()"],
        capture_output=True, text=True, timeout=60)
    if result.returncode != 0 or "socket(AF_UNIX" not in probe.read_text(errors="replace"):
        pytest.skip(f"strace cannot trace a child here (ptrace not permitted?): "
                    f"{result.stderr.strip()[:300]}")
    return strace


# Run under strace: first the command line (a fresh process per command, before this one
# imports lexedge, so each starts from the stray environment), then the Python API, whose
# searcher holds both onnxruntime sessions open for SESSION_ALIVE_S between two searches.
SERVED_PATH = """
    import json, os, subprocess, sys, time

    corpus, bundle, index, cli_home, seconds, query = sys.argv[1:]
    cli_env = dict(os.environ, HOME=cli_home)
    lexedge = [sys.executable, "-m", "lexedge"]
    subprocess.run(lexedge + ["index", "build", "--docs", corpus, "--out", index,
                              "--bundle", bundle], env=cli_env, check=True,
                   stdout=subprocess.DEVNULL)
    cli = subprocess.run(lexedge + ["search", query, "--index", index, "--json"], env=cli_env,
                         check=True, capture_output=True, text=True)

    from lexedge.runtime.searcher import Searcher

    searcher = Searcher(index)
    first = searcher.search(query)
    time.sleep(float(seconds))
    second = searcher.search(query)
    print(json.dumps({"cli": json.loads(cli.stdout),
                      "api": [[hit.to_dict() for hit in result.hits]
                              for result in (first, second)]}))
"""


def test_served_path_opens_no_socket_and_writes_nothing_home(tiny_dataset, tiny_bundle,
                                                              tmp_path):
    strace = strace_or_skip(tmp_path)
    api_home, cli_home = tmp_path / "home-api", tmp_path / "home-cli"
    api_home.mkdir()
    cli_home.mkdir()
    trace = tmp_path / "served.trace"
    environment = dict(os.environ, HOME=str(api_home), **STRAY_ENVIRONMENT)
    result = subprocess.run(
        [strace, "-f", "-qq", "-e", TRACED, "-e", "signal=none", "-o", str(trace),
         sys.executable, "-c", textwrap.dedent(SERVED_PATH), str(tiny_dataset / "corpus.jsonl"),
         str(tiny_bundle), str(tmp_path / "idx"), str(cli_home), str(SESSION_ALIVE_S), QUERY],
        capture_output=True, text=True, env=environment, cwd=tmp_path,
        timeout=SESSION_ALIVE_S + 90)
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    # Both models really ran, in both kinds of process: the sessions were there to phone home.
    for hits in (served["cli"]["hits"], *served["api"]):
        assert hits and {"dense", "rerank"} <= set(hits[0]["scores"])

    calls = [line for line in trace.read_text(errors="replace").splitlines()
             if line.strip() and not line.split(None, 1)[-1].startswith(("+++", "---"))]
    internet = [line for line in calls if "AF_INET" in line or "connect(" in line]
    assert not internet, (
        "a lexedge process opened an internet socket or connected somewhere (onnxruntime's "
        "telemetry resolves mobile.events.data.microsoft.com unless ORT_DISABLE_TELEMETRY=1 "
        "is set before it loads):\n" + "\n".join(internet[:20]))
    for home in (api_home, cli_home):
        written = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
        assert written == [], f"written under HOME by the {home.name[5:]} process: {written}"
    # Not even a local socket: nothing on the served path needs one (checked on this trace),
    # so any socket at all is new behaviour to look at before it is allowed.
    assert calls == [], "network system calls on the served path:\n" + "\n".join(calls[:20])


def run_python(code: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=dict(os.environ, HOME=str(home), **STRAY_ENVIRONMENT),
                          timeout=120)


def test_lexedge_forces_onnxruntime_telemetry_off_before_onnxruntime_loads(tmp_path):
    """The same promise without strace (where it is missing this still runs): importing
    lexedge overrides the stray value, so the onnxruntime imported next writes nothing."""
    result = run_python("""
        import os
        import lexedge
        import onnxruntime
        print(os.environ["ORT_DISABLE_TELEMETRY"])
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1"]
    assert "RuntimeWarning" not in result.stderr
    assert sorted(tmp_path.rglob("*")) == []


def test_onnxruntime_imported_before_lexedge_is_warned_about(tmp_path):
    """onnxruntime reads the switch once, when it loads: afterwards nothing in the process can
    stop its uploader, so lexedge says so. A stand-in module plays onnxruntime here, because the
    real one would start the very telemetry this file forbids."""
    result = run_python("""
        import sys, types
        sys.modules["onnxruntime"] = types.ModuleType("onnxruntime")
        import lexedge.runtime
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "RuntimeWarning: onnxruntime was imported before lexedge" in result.stderr
