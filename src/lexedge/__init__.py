"""lexedge: train legal retrievers on a GPU, ship them as INT8 ONNX, search offline.

The parts are installed as ``lexedge.trainer``, ``lexedge.export``, ``lexedge.runtime`` and
``lexedge.tui``; importing this package imports none of them.
"""

__version__ = "0.1.0"
