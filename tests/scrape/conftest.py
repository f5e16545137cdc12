"""Real HTTP servers on 127.0.0.1: the bundled demo forum (recording every request path), and the
fixture forums of each engine (tests/scrape/forums), with faults injected where a test asks."""

from __future__ import annotations

import functools
import importlib
import json
import sqlite3
import threading
from collections.abc import Callable
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

from forumtune.config import ScrapeConfig
from forumtune.scrape.crawler import crawl
from forumtune.scrape.summary import CrawlSummary
from tests.conftest import DEMO_FORUM
from tests.scrape.forums.content import Forum, write_forum
from tests.scrape.forums.server import Fault, ServerLog, serve_forum

ENGINES = ["phpbb", "vbulletin", "xenforo", "smf", "discourse", "mybb", "invision"]
FAST = {"requests_per_second": 0, "concurrency": 4}


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
    handler = functools.partial(
        type("Handler", (RecordingHandler,), {"requests": requests}), directory=str(DEMO_FORUM)
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()


def engine_markup(name: str) -> ModuleType:
    return importlib.import_module(f"tests.scrape.forums.{name}")


CrawlForum = Callable[..., tuple[CrawlSummary, ServerLog]]


@pytest.fixture
def crawl_forum(tmp_path: Path) -> CrawlForum:
    """Write `forum` in an engine's markup, serve it (with faults), crawl it into tmp_path/forum.sqlite."""

    def run(
        engine: str,
        forum: Forum | None = None,
        faults: dict[str, list[Fault]] | None = None,
        **settings: object,
    ) -> tuple[CrawlSummary, ServerLog]:
        markup = engine_markup(engine)
        folder = tmp_path / f"{engine}-forum"
        write_forum(markup, forum or Forum(), folder)
        config = ScrapeConfig(url="", site=engine, **{**FAST, **settings})
        with serve_forum(folder, faults) as (base_url, log):
            summary = crawl(
                config, tmp_path / "forum.sqlite", base_url + markup.list_path(1), show_progress=False
            )
        return summary, log

    return run


def stored_posts(store_path: Path) -> dict[str, list[dict]]:
    """Thread title → its posts in order, as plain dicts."""
    db = sqlite3.connect(store_path)
    rows = db.execute(
        "SELECT t.title, p.author, p.posted_at, p.text, p.quotes, p.signature, p.links, p.likes,"
        " p.score, p.accepted FROM posts p"
        " JOIN threads t ON t.id = p.thread_id ORDER BY t.list_position, p.position"
    ).fetchall()
    db.close()
    threads: dict[str, list[dict]] = {}
    for title, author, posted_at, text, quotes, signature, links, likes, score, accepted in rows:
        threads.setdefault(title, []).append(
            {
                "author": author,
                "posted_at": posted_at,
                "text": text,
                "quotes": json.loads(quotes),
                "signature": signature,
                "links": json.loads(links),
                "likes": likes,
                "score": score,
                "accepted": accepted,
            }
        )
    return threads
