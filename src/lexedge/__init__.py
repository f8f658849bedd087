"""lexedge: train legal retrievers on a GPU, ship them as INT8 ONNX, search offline.

The parts are installed as ``lexedge.trainer``, ``lexedge.export``, ``lexedge.runtime`` and
``lexedge.tui``; importing this package imports none of them. The runtime's main classes are
here by name, loaded on first use::

    from lexedge import Index, Searcher
    Index.build([{"id": "a1", "title": "民法 第九十条", "text": "公の秩序…"}], "idx")
    for hit in Searcher("idx").search("公序良俗").hits:
        print(hit.rank, hit.title)
 It does switch off
onnxruntime's telemetry (:func:`disable_telemetry`), because this module runs before any
part does, whichever entry point a process came in by.
"""

import os
import sys
import warnings

__version__ = "0.1.0"

#: onnxruntime's switch for its 1DS telemetry (issue 20, finding 2).
ORT_TELEMETRY_SWITCH = "ORT_DISABLE_TELEMETRY"
#: Values onnxruntime 1.32 takes as "off" (measured: "1", "true", "yes" in any case; "0",
#: "false", "off", "" and others leave it on).
_ORT_TELEMETRY_OFF = frozenset({"1", "true", "yes"})


def disable_telemetry() -> None:
    """Keep onnxruntime from writing a device id and phoning home (issue 20, finding 2).

    onnxruntime >= 1.29 ships 1DS telemetry on Linux. Measured with onnxruntime 1.32.0 under
    ``strace -f``: ``import onnxruntime`` alone (no session needed) writes
    ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/{deviceid,onnxruntime.db}`` and, about
    10 s later and again every few seconds, resolves ``mobile.events.data.microsoft.com``
    (AF_INET sockets, connect and sendto to the DNS server). ``ORT_DISABLE_TELEMETRY=1`` in the
    environment stops both, but onnxruntime reads it once, when its native module loads:
    setting it after ``import onnxruntime``, or calling ``ort.disable_telemetry_events()``,
    stops neither the files nor the lookups.

    So this runs when the ``lexedge`` package is imported, which precedes every
    ``lexedge.*`` module (the CLI, ``python -m lexedge``, the Python API, the TUI) and every
    lazy ``import onnxruntime`` in them. A script that imported onnxruntime before lexedge
    already has the uploader running, which nothing in the process can stop; lexedge then
    warns, telling the user to import lexedge first or set the variable before Python starts.

    The value is forced, not defaulted: a law office's documents and queries must not leave
    the machine, and a stray ``ORT_DISABLE_TELEMETRY=0`` inherited from a shell profile or a
    container image must not undo that promise. The variable is inherited by every child
    process lexedge starts, so their onnxruntime is quiet too.
    """
    was = os.environ.get(ORT_TELEMETRY_SWITCH, "")
    os.environ[ORT_TELEMETRY_SWITCH] = "1"
    if "onnxruntime" in sys.modules and was.strip().lower() not in _ORT_TELEMETRY_OFF:
        warnings.warn(
            "onnxruntime was imported before lexedge, with its telemetry on: it has already "
            "written ~/.cache/Microsoft/DeveloperTools/.onnxruntime and will try to reach "
            "mobile.events.data.microsoft.com from this process. Import lexedge before "
            f"onnxruntime, or set {ORT_TELEMETRY_SWITCH}=1 before Python starts.",
            RuntimeWarning, stacklevel=2)


disable_telemetry()


#: What ``from lexedge import NAME`` gives, and from which runtime module (PEP 562: loaded on
#: first use, so ``import lexedge`` stays light and telemetry is off before onnxruntime loads).
_API = {"Index": "index", "Searcher": "searcher", "SearchResult": "searcher", "Hit": "searcher",
        "SearchSettings": "settings", "Bundle": "bundle", "Document": "datasets",
        "LexedgeError": "errors", "ServiceClient": "client"}
__all__ = ["disable_telemetry", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f"lexedge.runtime.{_API[name]}"), name)
    raise AttributeError(f"module 'lexedge' has no attribute {name!r}")
