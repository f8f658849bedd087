"""A real ``lexedge serve`` for tests: uvicorn on a free loopback port, in a thread of the
test process."""

import threading
import time
from contextlib import contextmanager

import uvicorn

from lexedge.runtime.serve import IndexService, Limits, create_app


@contextmanager
def running(index, token=None, limits=Limits(), poll_seconds=0.05, admin_token=None):
    """The service on a free loopback port, in this process; yields (url, service)."""
    service = IndexService(index, poll_seconds=poll_seconds)
    service.start()
    app = create_app(service, token, limits, admin_token)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", service
    finally:
        server.should_exit = True
        thread.join(10)
        service.stop()
