"""A real HTTP server on 127.0.0.1 for a fixture forum folder, with faults injected on chosen paths."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.scrape.forums.content import file_for


@dataclass
class Fault:
    """What the server does instead of serving the page: an HTTP status, a stall, a cut body, a redirect."""

    status: int | None = None
    retry_after: str | None = None
    stall_s: float = 0.0
    truncate: bool = False
    redirect_to: str | None = None
    huge_bytes: int = 0


@dataclass
class ServerLog:
    requests: list[tuple[float, str]] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [path for _, path in self.requests]

    def times(self, path: str) -> list[float]:
        return [moment for moment, requested in self.requests if requested == path]


class FixtureServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, folder: Path, faults: dict[str, list[Fault]], content_types: dict[str, str]):
        super().__init__(("127.0.0.1", 0), FixtureHandler)
        self.folder, self.content_types = folder, content_types
        self.faults = defaultdict(list, {path: list(queue) for path, queue in faults.items()})
        self.log = ServerLog()
        self.lock = threading.Lock()

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        pass  # a client that gave up on a stalled response is part of the test, not a failure


class FixtureHandler(BaseHTTPRequestHandler):
    server: FixtureServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.log.requests.append((time.monotonic(), self.path))
            queue = self.server.faults.get(self.path)
            fault = queue.pop(0) if queue else None
        if fault is not None and fault.stall_s:
            time.sleep(fault.stall_s)
        if fault is not None and fault.redirect_to:
            return self.reply(302, b"", {"Location": fault.redirect_to})
        if fault is not None and fault.status:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return self.reply(fault.status, b"try again later", headers)
        if fault is not None and fault.huge_bytes:
            return self.reply(200, b"<html>" + b"x" * fault.huge_bytes, {})
        target = file_for(self.server.folder, self.path)
        if not target.is_file():
            return self.reply(404, b"not found", {})
        body = target.read_bytes()
        if fault is not None and fault.truncate:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return None
        return self.reply(200, body, {})

    def reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        path = self.path.partition("?")[0]
        default = "application/json" if path.endswith(".json") else "text/html"
        self.send_header("Content-Type", self.server.content_types.get(self.path, default))
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def serve_forum(
    folder: Path, faults: dict[str, list[Fault]] | None = None, content_types: dict[str, str] | None = None
) -> Iterator[tuple[str, ServerLog]]:
    """(base URL, request log) of a server for folder, stopped on exit."""
    server = FixtureServer(folder, faults or {}, content_types or {})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.log
    finally:
        server.shutdown()
        server.server_close()
