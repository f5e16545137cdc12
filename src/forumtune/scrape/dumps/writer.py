"""Storing a dump's rows: batches committed with the progress, resume by row count, a progress bar."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from forumtune.forum_store import CRAWL_COMPLETE, CRAWL_PASS, ForumStore, ScrapedPost

BATCH_ROWS = 5000  # rows per transaction: few enough to lose little on a kill, many enough to be fast


@dataclass(frozen=True)
class DumpThread:
    url: str
    external_id: str
    title: str


@dataclass(frozen=True)
class DumpPost:
    thread_url: str
    post: ScrapedPost
    parent_id: str | None = None  # the post this one replies to, when the dump says (Reddit): quoted


@dataclass(frozen=True)
class DumpComment:
    """A comment on a post whose thread the dump does not name (Stack Exchange's Comments.xml): it joins
    that post's thread, after the posts already there, quoting the post it comments on."""

    post_id: str
    post: ScrapedPost


@dataclass(frozen=True)
class DumpAccepted:
    """Marks an already imported answer as the accepted one (Stack Exchange's AcceptedAnswerId)."""

    external_id: str


DumpRow = (
    DumpThread | DumpPost | DumpComment | DumpAccepted | None
)  # None: a row read but not stored (skipped)


@dataclass
class ImportSummary:
    rows: int = 0
    threads: int = 0
    posts: int = 0
    resumed_after: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "threads": self.threads,
            "posts": self.posts,
            "resumed_after": self.resumed_after,
            "skipped": dict(self.skipped),
        }


def progress_key(path: Path) -> str:
    return f"import_rows:{path.resolve()}"


def import_rows(
    store: ForumStore,
    path: Path,
    rows: Iterator[tuple[int, DumpRow | str]],
    summary: ImportSummary,
    console: Console | None = None,
) -> None:
    """Store the rows of one dump file; `rows` yields (bytes read so far, row or a reason it was skipped)."""
    key = progress_key(path)
    done = int(store.get_meta(key) or 0)
    summary.resumed_after += done
    position = store.thread_count()
    with FileProgress(path, console) as advance:
        batch: list[DumpRow | str] = []
        last = done
        for number, (offset, row) in enumerate(rows, start=1):
            last = number
            if number <= done:
                continue  # stored by an earlier, killed run
            batch.append(row)
            if len(batch) >= BATCH_ROWS:
                position = store_batch(store, batch, key, number, position, summary)
                batch = []
                advance(offset)
        store_batch(store, batch, key, max(last, done), position, summary)
        advance(path.stat().st_size)
    store.set_meta(CRAWL_PASS, store.get_meta(CRAWL_PASS) or "1")
    store.set_meta(CRAWL_COMPLETE, "1")  # nothing to resume on the forum's side: build may read it


def store_batch(
    store: ForumStore,
    batch: Iterable[DumpRow | str],
    key: str,
    rows_done: int,
    position: int,
    summary: ImportSummary,
) -> int:
    with store.db:
        for row in batch:
            summary.rows += 1
            if isinstance(row, str):
                summary.skipped[row] += 1
            elif isinstance(row, DumpThread):
                store.import_thread(row.url, row.external_id, row.title, position)
                position += 1
                summary.threads += 1
            elif isinstance(row, DumpPost):
                post = quoting(store, row.post, row.parent_id) if row.parent_id else row.post
                if store.import_post(row.thread_url, post):
                    summary.posts += 1
                else:
                    summary.skipped["no_thread"] += 1
            elif isinstance(row, DumpComment):
                url = store.thread_url_of_post(row.post_id)
                if url is not None and store.import_post(url, quoting(store, row.post, row.post_id)):
                    summary.posts += 1
                else:
                    summary.skipped["no_post"] += 1
            elif isinstance(row, DumpAccepted):
                store.mark_accepted([row.external_id])
        store.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(rows_done)))
    return position


def quoting(store: ForumStore, post: ScrapedPost, parent_id: str) -> ScrapedPost:
    """The post with the words of the post it answers as its first quote: how build tells whom it answers."""
    quoted = store.post_text(parent_id)
    return replace(post, quotes=[quoted[:300], *post.quotes]) if quoted else post


class FileProgress:
    """A progress bar over the bytes of the dump file read so far."""

    def __init__(self, path: Path, console: Console | None):
        self.progress = Progress(
            TextColumn(f"import {path.name}"),
            BarColumn(),
            DownloadColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=console is None or not console.is_terminal,
            transient=True,
        )
        self.task = self.progress.add_task("import", total=path.stat().st_size)

    def __enter__(self):  # type: ignore[no-untyped-def]
        self.progress.__enter__()
        return lambda offset: self.progress.update(self.task, completed=offset)

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)
