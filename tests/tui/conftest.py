import asyncio
import inspect
from pathlib import Path

import pytest


@pytest.fixture
def tiny_index(tiny_dataset, tmp_path) -> Path:
    """The six-article bilingual corpus of ``tiny_dataset``, indexed (BM25 only)."""
    from lexedge.runtime.index import Index

    Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx", progress=False)
    return tmp_path / "idx"


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Run ``async def`` tests on a fresh event loop (Textual's pilot is async), without
    adding an async plugin to the test dependencies."""
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        arguments = {name: pyfuncitem.funcargs[name]
                     for name in pyfuncitem._fixtureinfo.argnames}
        asyncio.run(pyfuncitem.obj(**arguments))
        return True
    return None
