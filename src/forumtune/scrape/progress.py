"""The live crawl display: threads done, pages/s, errors so far."""

from __future__ import annotations

import time
from typing import Self

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from forumtune.scrape.fetcher import FetchStats


class CrawlDisplay:
    def __init__(self, console: Console | None, enabled: bool):
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[pages]} pages, {task.fields[rate]:.0f}/s, errors {task.fields[errors]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not enabled,
        )
        self.task: TaskID | None = None
        self.started = time.monotonic()

    def __enter__(self) -> Self:
        self.progress.__enter__()
        self.task = self.progress.add_task("thread lists", total=None, pages=0, rate=0.0, errors=0)
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def start_threads(self, total: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, description="threads", total=total, completed=0)

    def update(self, stats: FetchStats, threads_done: int | None = None) -> None:
        if self.task is None:
            return
        elapsed = max(time.monotonic() - self.started, 1e-6)
        fields = {"pages": stats.pages, "rate": stats.pages / elapsed, "errors": sum(stats.errors.values())}
        if threads_done is not None:
            self.progress.update(self.task, completed=threads_done, **fields)
        else:
            self.progress.update(self.task, **fields)
