"""The SQLite forum store: threads, posts and crawl state, written so a killed crawl resumes cleanly.

Each fetched thread page is stored in one transaction together with the thread's progress, so the
store never holds half a page, and a restarted crawl asks for exactly the page that was missing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from forumtune.scrape.models import ScrapedPost, ThreadRef

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS threads (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL UNIQUE,
    external_id TEXT,
    title TEXT NOT NULL,
    starter TEXT,
    list_position INTEGER NOT NULL,
    pages_fetched INTEGER NOT NULL DEFAULT 0,
    next_page_url TEXT,
    done INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS posts (
    id INTEGER PRIMARY KEY,
    thread_id INTEGER NOT NULL REFERENCES threads(id),
    position INTEGER NOT NULL,
    external_id TEXT,
    author TEXT,
    posted_at TEXT,
    text TEXT NOT NULL,
    quotes TEXT NOT NULL,
    signature TEXT,
    links TEXT NOT NULL,
    UNIQUE (thread_id, position)
);
CREATE TABLE IF NOT EXISTS list_pages (url TEXT PRIMARY KEY, next_url TEXT);
"""


@dataclass(frozen=True)
class StoredThread:
    id: int
    url: str
    title: str
    pages_fetched: int
    next_page_url: str | None
    done: bool


@dataclass(frozen=True)
class StoredPost:
    thread_id: int
    position: int
    author: str | None
    posted_at: str | None
    text: str
    quotes: list[str]
    signature: str | None


class ForumStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> ForumStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def list_page_next(self, url: str) -> tuple[bool, str | None]:
        """Whether a thread-list page was already walked, and the next list page it pointed to."""
        row = self.db.execute("SELECT next_url FROM list_pages WHERE url = ?", (url,)).fetchone()
        return (row is not None, row[0] if row else None)

    def add_list_page(self, url: str, threads: list[ThreadRef], next_url: str | None) -> None:
        with self.db:
            (count,) = self.db.execute("SELECT COUNT(*) FROM threads").fetchone()
            for offset, ref in enumerate(threads):
                self.db.execute(
                    "INSERT OR IGNORE INTO threads (url, external_id, title, starter, list_position,"
                    " next_page_url) VALUES (?, ?, ?, ?, ?, ?)",
                    (ref.url, ref.external_id, ref.title, ref.starter, count + offset, ref.url),
                )
            self.db.execute("INSERT OR REPLACE INTO list_pages (url, next_url) VALUES (?, ?)", (url, next_url))

    def thread_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM threads").fetchone()[0]

    def post_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM posts").fetchone()[0]

    def threads(self, *, unfinished_only: bool = False, limit: int | None = None) -> list[StoredThread]:
        query = "SELECT id, url, title, pages_fetched, next_page_url, done FROM threads"
        if unfinished_only:
            query += " WHERE done = 0"
        query += " ORDER BY list_position"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        return [StoredThread(*row[:5], done=bool(row[5])) for row in self.db.execute(query)]

    def add_thread_page(
        self, thread_id: int, title: str | None, posts: list[ScrapedPost], next_url: str | None, done: bool
    ) -> None:
        with self.db:
            (start,) = self.db.execute("SELECT COUNT(*) FROM posts WHERE thread_id = ?", (thread_id,)).fetchone()
            self.db.executemany(
                "INSERT INTO posts (thread_id, position, external_id, author, posted_at, text, quotes,"
                " signature, links) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (thread_id, start + i, p.external_id, p.author, p.posted_at, p.text,
                     json.dumps(p.quotes), p.signature, json.dumps(p.links))
                    for i, p in enumerate(posts)
                ],
            )
            self.db.execute(
                "UPDATE threads SET pages_fetched = pages_fetched + 1, next_page_url = ?, done = ?,"
                " title = COALESCE(?, title) WHERE id = ?",
                (next_url, int(done), title, thread_id),
            )

    def mark_thread_done(self, thread_id: int) -> None:
        with self.db:
            self.db.execute("UPDATE threads SET done = 1, next_page_url = NULL WHERE id = ?", (thread_id,))

    def iter_thread_posts(self) -> Iterator[tuple[StoredThread, list[StoredPost]]]:
        """Every thread with its posts in order, for the dataset builder."""
        for thread in self.threads():
            rows = self.db.execute(
                "SELECT thread_id, position, author, posted_at, text, quotes, signature FROM posts"
                " WHERE thread_id = ? ORDER BY position",
                (thread.id,),
            ).fetchall()
            posts = [StoredPost(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6]) for r in rows]
            yield thread, posts
