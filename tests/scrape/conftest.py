"""A real HTTP server on 127.0.0.1 serving the demo forum and recording every request path."""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import DEMO_FORUM


class RecordingHandler(SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def forum_server():
    """(base_url, list of requested paths)."""
    requests: list[str] = []
    handler = functools.partial(type("Handler", (RecordingHandler,), {"requests": requests}),
                                directory=str(DEMO_FORUM))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()
