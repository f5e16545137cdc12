"""The SQLite forum store: threads, posts and crawl state, written so a killed crawl resumes cleanly.

The scrape stage writes it (what a site profile read from a page: ThreadRef, ScrapedPost) and the
build stage reads it (StoredThread, StoredPost); both go through this module, which owns the schema.

Each fetched thread page is stored in one transaction together with the thread's progress, so the
store never holds half a page, and a restarted crawl asks for exactly the page that was missing.
Posts remember their page: storing page N again (a re-crawl of a thread's last page that has grown)
replaces that page's posts instead of adding them twice.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

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
CREATE TABLE IF NOT EXISTS thread_pages (
    thread_id INTEGER NOT NULL REFERENCES threads(id),
    number INTEGER NOT NULL,
    url TEXT NOT NULL,
    PRIMARY KEY (thread_id, number)
);
"""
# Columns added after the first release; older stores get them on open.
ADDED_COLUMNS = {
    "threads": {"last_post_at": "TEXT", "replies": "TEXT"},
    # Community signals, NULL where the page shows none: likes / reactions / thanks, net votes, and 1 for
    # the answer the asker or a moderator marked accepted (a solution).
    "posts": {"page": "INTEGER", "likes": "INTEGER", "score": "INTEGER", "accepted": "INTEGER"},
    "list_pages": {"pass": "INTEGER NOT NULL DEFAULT 1"},
}
CRAWL_PASS = "crawl_pass"
SITE = "site"  # meta key: the site profile the crawl reads the forum with (scrape.site: auto decides it once)
CRAWL_COMPLETE = "crawl_complete"  # meta key: "1" once a crawl walked every list page and thread to the end


@dataclass(frozen=True)
class ThreadRef:
    """A thread as a thread-list page shows it."""

    url: str
    title: str
    external_id: str | None = None
    starter: str | None = None
    last_post_at: str | None = (
        None  # what the list says about the thread's activity: a change means new posts
    )
    replies: str | None = None


@dataclass(frozen=True)
class ScrapedPost:
    """A post as a site profile read it from a thread page."""

    external_id: str | None
    author: str | None
    posted_at: str | None
    text: str
    quotes: list[str] = field(default_factory=list)
    signature: str | None = None
    links: list[str] = field(default_factory=list)
    likes: int | None = None  # likes, reactions or thanks the post received; None: the page shows none
    score: int | None = None  # net up/down votes; None: the forum has no votes
    accepted: bool | None = None  # marked as the accepted answer / solution; None: the forum has no such mark


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
    likes: int | None = None
    score: int | None = None
    accepted: bool | None = None


@dataclass(frozen=True)
class LocatedPost:
    """A post with where a reader finds it (its thread and page URL), for the search index."""

    thread_id: int
    thread_url: str
    title: str
    position: int
    page_url: str
    external_id: str | None
    author: str | None
    posted_at: str | None
    text: str
    signature: str | None


@dataclass(frozen=True)
class ListPageChanges:
    new: int  # threads first seen on this page
    reopened: int  # known threads whose activity changed: their last page is fetched again
    known: int  # threads on this page that were already in the store


class ForumStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self._add_missing_columns()
        self.db.execute("CREATE INDEX IF NOT EXISTS posts_by_page ON posts (thread_id, page)")
        self.db.execute("CREATE INDEX IF NOT EXISTS posts_by_external_id ON posts (external_id)")

    def _add_missing_columns(self) -> None:
        for table, columns in ADDED_COLUMNS.items():
            present = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
            for name, declaration in columns.items():
                if name not in present:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")
        self.db.commit()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def crawl_complete(self) -> bool:
        """Whether the last crawl finished (a killed one is resumed by the next `forumtune scrape`)."""
        return self.get_meta(CRAWL_COMPLETE) == "1"

    def crawl_pass(self) -> int:
        """Which walk over the thread lists this is: each finished crawl starts the next (incremental) one."""
        return int(self.get_meta(CRAWL_PASS) or 0)

    def list_page_next(self, url: str) -> tuple[bool, str | None]:
        """Whether a thread-list page was already walked in this pass, and the next list page it pointed to."""
        row = self.db.execute(
            "SELECT next_url FROM list_pages WHERE url = ? AND pass >= ?", (url, self.crawl_pass())
        ).fetchone()
        return (row is not None, row[0] if row else None)

    def add_list_page(
        self, url: str, threads: list[ThreadRef], next_url: str | None, *, max_threads: int | None = None
    ) -> ListPageChanges:
        """Record a walked list page: new threads (up to max_threads in all) and known threads with news."""
        new = reopened = known = 0
        with self.db:
            (count,) = self.db.execute("SELECT COUNT(*) FROM threads").fetchone()
            for ref in threads:
                row = self.db.execute(
                    "SELECT id, last_post_at, replies, done FROM threads WHERE url = ?", (ref.url,)
                ).fetchone()
                if row is not None:
                    known += 1
                    reopened += self._reopen_if_changed(row, ref)
                elif max_threads is None or count < max_threads:
                    self.db.execute(
                        "INSERT INTO threads (url, external_id, title, starter, list_position, next_page_url,"
                        " last_post_at, replies) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            ref.url,
                            ref.external_id,
                            ref.title,
                            ref.starter,
                            count,
                            ref.url,
                            ref.last_post_at,
                            ref.replies,
                        ),
                    )
                    count, new = count + 1, new + 1
            self.db.execute(
                "INSERT OR REPLACE INTO list_pages (url, next_url, pass) VALUES (?, ?, ?)",
                (url, next_url, self.crawl_pass()),
            )
        return ListPageChanges(new=new, reopened=reopened, known=known)

    def _reopen_if_changed(self, row: tuple, ref: ThreadRef) -> int:
        thread_id, last_post_at, replies, done = row
        unchanged = (last_post_at, replies) == (ref.last_post_at, ref.replies) and (
            ref.last_post_at or ref.replies
        )
        if not done or unchanged:  # a thread still being crawled reaches its end in this pass anyway
            self.db.execute(
                "UPDATE threads SET last_post_at = ?, replies = ? WHERE id = ?",
                (ref.last_post_at, ref.replies, thread_id),
            )
            return 0
        # The thread has news: fetch its last stored page again (it may have grown) and go on from there.
        self.db.execute(
            "UPDATE threads SET done = 0, last_post_at = ?, replies = ?, pages_fetched = MAX(pages_fetched - 1, 0),"
            " next_page_url = COALESCE((SELECT url FROM thread_pages WHERE thread_id = threads.id"
            " AND number = threads.pages_fetched), url) WHERE id = ?",
            (ref.last_post_at, ref.replies, thread_id),
        )
        return 1

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

    def page_urls(self, thread_id: int) -> set[str]:
        return {
            row[0]
            for row in self.db.execute("SELECT url FROM thread_pages WHERE thread_id = ?", (thread_id,))
        }

    def post_ids(self, thread_id: int, before_page: int) -> set[str]:
        rows = self.db.execute(
            "SELECT external_id FROM posts WHERE thread_id = ? AND page < ? AND external_id IS NOT NULL",
            (thread_id, before_page),
        )
        return {row[0] for row in rows}

    def add_thread_page(
        self,
        thread_id: int,
        title: str | None,
        posts: list[ScrapedPost],
        next_url: str | None,
        done: bool,
        *,
        page_url: str | None = None,
    ) -> None:
        """Store the thread's next page (replacing it, when it is fetched again) with the thread's progress."""
        with self.db:
            (number,) = self.db.execute(
                "SELECT pages_fetched + 1 FROM threads WHERE id = ?", (thread_id,)
            ).fetchone()
            self.db.execute("DELETE FROM posts WHERE thread_id = ? AND page >= ?", (thread_id, number))
            self.db.execute(
                "DELETE FROM thread_pages WHERE thread_id = ? AND number >= ?", (thread_id, number)
            )
            (start,) = self.db.execute(
                "SELECT COUNT(*) FROM posts WHERE thread_id = ?", (thread_id,)
            ).fetchone()
            self.db.executemany(
                "INSERT INTO posts (thread_id, position, page, external_id, author, posted_at, text, quotes,"
                " signature, links, likes, score, accepted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        thread_id,
                        start + i,
                        number,
                        p.external_id,
                        p.author,
                        p.posted_at,
                        p.text,
                        json.dumps(p.quotes),
                        p.signature,
                        json.dumps(p.links),
                        p.likes,
                        p.score,
                        None if p.accepted is None else int(p.accepted),
                    )
                    for i, p in enumerate(posts)
                ],
            )
            if page_url is not None:
                self.db.execute(
                    "INSERT INTO thread_pages (thread_id, number, url) VALUES (?, ?, ?)",
                    (thread_id, number, page_url),
                )
            self.db.execute(
                "UPDATE threads SET pages_fetched = ?, next_page_url = ?, done = ?, title = COALESCE(?, title)"
                " WHERE id = ?",
                (number, next_url, int(done), title, thread_id),
            )

    # Imports from dumps (Stack Exchange, Reddit): threads and posts arrive one row at a time, in batches
    # the importer commits together with its progress (`with store.db:`), so these do not commit.

    def import_thread(self, url: str, external_id: str, title: str, position: int) -> None:
        """A thread of a dump, finished on arrival (a dump has no pages to fetch); known ones are kept."""
        self.db.execute(
            "INSERT OR IGNORE INTO threads (url, external_id, title, list_position, pages_fetched, done)"
            " VALUES (?, ?, ?, ?, 1, 1)",
            (url, external_id, title, position),
        )

    def import_post(self, thread_url: str, post: ScrapedPost) -> bool:
        """Append a post to its thread; False when the thread is not in the store (an orphan row)."""
        row = self.db.execute("SELECT id FROM threads WHERE url = ?", (thread_url,)).fetchone()
        if row is None:
            return False
        (position,) = self.db.execute("SELECT COUNT(*) FROM posts WHERE thread_id = ?", (row[0],)).fetchone()
        self.db.execute(
            "INSERT INTO posts (thread_id, position, page, external_id, author, posted_at, text, quotes, signature,"
            " links, likes, score, accepted) VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row[0],
                position,
                post.external_id,
                post.author,
                post.posted_at,
                post.text,
                json.dumps(post.quotes),
                post.signature,
                json.dumps(post.links),
                post.likes,
                post.score,
                None if post.accepted is None else int(post.accepted),
            ),
        )
        return True

    def thread_url_of_post(self, external_id: str) -> str | None:
        row = self.db.execute(
            "SELECT t.url FROM posts p JOIN threads t ON t.id = p.thread_id WHERE p.external_id = ? LIMIT 1",
            (external_id,),
        ).fetchone()
        return row[0] if row else None

    def post_text(self, external_id: str) -> str | None:
        row = self.db.execute(
            "SELECT text FROM posts WHERE external_id = ? LIMIT 1", (external_id,)
        ).fetchone()
        return row[0] if row else None

    def mark_accepted(self, external_ids: list[str]) -> None:
        self.db.executemany(
            "UPDATE posts SET accepted = 1 WHERE external_id = ?", [(i,) for i in external_ids]
        )

    def mark_thread_done(self, thread_id: int) -> None:
        with self.db:
            self.db.execute("UPDATE threads SET done = 1, next_page_url = NULL WHERE id = ?", (thread_id,))

    def iter_thread_posts(self) -> Iterator[tuple[StoredThread, list[StoredPost]]]:
        """Every thread with its posts in order, for the dataset builder."""
        for thread in self.threads():
            rows = self.db.execute(
                "SELECT thread_id, position, author, posted_at, text, quotes, signature, likes, score, accepted"
                " FROM posts"
                " WHERE thread_id = ? ORDER BY position",
                (thread.id,),
            ).fetchall()
            posts = [
                StoredPost(
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    json.loads(r[5]),
                    r[6],
                    r[7],
                    r[8],
                    None if r[9] is None else bool(r[9]),
                )
                for r in rows
            ]
            yield thread, posts

    def iter_located_posts(self) -> Iterator[LocatedPost]:
        """Every post with its thread's title and its page's URL, thread by thread in list order."""
        rows = self.db.execute(
            "SELECT t.id, t.url, t.title, p.position, COALESCE(tp.url, t.url), p.external_id, p.author,"
            " p.posted_at, p.text, p.signature FROM posts p JOIN threads t ON t.id = p.thread_id"
            " LEFT JOIN thread_pages tp ON tp.thread_id = p.thread_id AND tp.number = p.page"
            " ORDER BY t.list_position, p.position"
        )
        for row in rows:
            yield LocatedPost(*row)
