"""Parsing pages in a second process, so that a fast crawl uses two cores instead of one.

The crawl's event loop is one thread: with the rate limit off, HTTP, SQLite and parsing all queue on
it, and parsing is the largest share of a page's CPU (benchmarks/RESULTS.md, "Scraper"). A worker
started with `python -m forumtune.scrape.parse_worker` reads pages from its stdin and answers each
with the parsed page as one JSON line. It ends when its stdin closes, which also happens when the
crawler is killed, so no worker outlives its crawl.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import deque
from dataclasses import fields
from typing import Any, BinaryIO

from forumtune.config import ScrapeConfig
from forumtune.errors import ScrapeError
from forumtune.forum_store import ScrapedPost, ThreadRef
from forumtune.scrape.models import ThreadListPage, ThreadPage
from forumtune.scrape.sites import SiteProfile, get_profile

PARSE_ERRORS = (ValueError, KeyError, TypeError, AttributeError)
REF_FIELDS = [field.name for field in fields(ThreadRef)]
POST_FIELDS = [field.name for field in fields(ScrapedPost)]
STREAM_LIMIT = 2**26  # one answer is one line; a page of posts is far below this
WORKER_GONE = (
    "the page-parsing process stopped unexpectedly (out of memory?); run the same command again "
    "to resume the crawl"
)


def parse_in_line(profile: SiteProfile, kind: str, text: str, url: str) -> ThreadListPage | ThreadPage:
    return profile.parse_thread_list(text, url) if kind == "list" else profile.parse_thread_page(text, url)


def page_as_json(page: ThreadListPage | ThreadPage) -> list[Any]:
    """Rows of field values in declaration order: no field names repeated, and no deep copy like asdict's."""
    if isinstance(page, ThreadListPage):
        return [[[getattr(ref, name) for name in REF_FIELDS] for ref in page.threads], page.next_url]
    return [page.title, [[getattr(post, name) for name in POST_FIELDS] for post in page.posts], page.next_url]


def page_from_json(kind: str, data: list[Any]) -> ThreadListPage | ThreadPage:
    if kind == "list":
        threads, next_url = data
        return ThreadListPage([ThreadRef(*row) for row in threads], next_url)
    title, posts, next_url = data
    return ThreadPage(title, [ScrapedPost(*row) for row in posts], next_url)


def serve(config: ScrapeConfig, requests: BinaryIO, answers: BinaryIO) -> None:
    """Answer requests (a JSON line [kind, url, length], then length bytes of UTF-8 page) until input ends."""
    profile = get_profile(config)
    while header := requests.readline():
        kind, url, length = json.loads(header)
        text = requests.read(length).decode()
        try:
            answer: dict[str, Any] = {"page": page_as_json(parse_in_line(profile, kind, text, url))}
        except PARSE_ERRORS as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        answers.write(json.dumps(answer).encode() + b"\n")
        answers.flush()


class PageParser:
    """Parses pages with the site profile: in a worker process when it pays, else on the event loop.

    It pays only for a fast crawl on a machine with a core to spare; with a rate limit, parsing is a
    sliver of the time between requests and a second process would only cost its start-up."""

    def __init__(self, config: ScrapeConfig, profile: SiteProfile):
        self.config, self.profile = config, profile
        self.process: asyncio.subprocess.Process | None = None
        self.waiting: deque[asyncio.Future[dict[str, Any]]] = deque()
        self.reader: asyncio.Task[None] | None = None

    def worth_a_process(self) -> bool:
        fast = self.config.requests_per_second == 0 or self.config.requests_per_second >= 50
        return fast and (os.cpu_count() or 1) > 1

    async def start(self) -> None:
        if not self.worth_a_process():
            return
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "forumtune.scrape.parse_worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=STREAM_LIMIT,
        )
        self.process.stdin.write(self.config.model_dump_json().encode() + b"\n")
        self.reader = asyncio.create_task(self.read_answers())

    async def parse(self, kind: str, text: str, url: str) -> ThreadListPage | ThreadPage:
        """The parsed page; raises ValueError when the profile cannot read it."""
        if self.process is None:
            return parse_in_line(self.profile, kind, text, url)
        if self.reader is None or self.reader.done():
            raise ScrapeError(WORKER_GONE)
        data = text.encode()
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting.append(answer)
        try:
            self.process.stdin.write(json.dumps([kind, url, len(data)]).encode() + b"\n" + data)
            await self.process.stdin.drain()
        except ConnectionError:  # a broken pipe: the worker is gone
            raise ScrapeError(WORKER_GONE) from None
        result = await answer
        if "error" in result:
            raise ValueError(result["error"])
        return page_from_json(kind, result["page"])

    async def read_answers(self) -> None:
        """Hand each answer line to the oldest waiting request: the worker answers in order."""
        try:
            while line := await self.process.stdout.readline():
                answer = self.waiting.popleft()
                if not answer.done():
                    answer.set_result(json.loads(line))
        finally:
            while self.waiting:  # the worker is gone: nothing more will come
                answer = self.waiting.popleft()
                if not answer.done():
                    answer.set_exception(ScrapeError(WORKER_GONE))

    async def aclose(self) -> None:
        if self.process is None:
            return
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), timeout=10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the crawler's to handle; its exit ends us
    config = ScrapeConfig.model_validate_json(sys.stdin.buffer.readline())
    serve(config, sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
