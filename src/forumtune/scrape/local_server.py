"""Serve a folder of static forum pages on 127.0.0.1, so the bundled demo is scraped over real HTTP."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from forumtune.errors import ConfigError


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_folder(folder: Path, host: str = "127.0.0.1") -> Iterator[str]:
    """Yield the base URL (http://127.0.0.1:PORT) of a server for `folder`, stopped on exit."""
    if not folder.is_dir():
        raise ConfigError(f"scrape.serve_dir {folder} is not a folder of forum pages")
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="forum-server", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
