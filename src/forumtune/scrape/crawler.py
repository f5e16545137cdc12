"""The crawl: thread-list pages first, then each thread's pages of posts, into the SQLite store."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from forumtune.config import ScrapeConfig
from forumtune.errors import ScrapeError
from forumtune.scrape.fetcher import Fetcher, FetchFailed
from forumtune.scrape.sites import SiteProfile, get_profile
from forumtune.scrape.store import ForumStore, StoredThread

CRAWL_COMPLETE = "crawl_complete"


@dataclass
class CrawlSummary:
    list_pages: int
    thread_pages: int
    threads: int
    posts: int
    retries: int
    errors: dict[str, int]

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


class Crawler:
    def __init__(self, config: ScrapeConfig, store: ForumStore, start_url: str):
        self.config = config
        self.store = store
        self.start_url = start_url
        self.profile: SiteProfile = get_profile(config.site)
        self.fetcher = Fetcher(config, start_url)
        self.origin = "{0.scheme}://{0.netloc}".format(urlsplit(start_url))
        self.list_pages = 0
        self.thread_pages = 0

    def relative(self, url: str | None) -> str | None:
        """Store URLs without scheme and host, so a forum served on another port still resumes."""
        if url is None:
            return None
        parts = urlsplit(url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def absolute(self, url: str | None) -> str | None:
        return urljoin(self.origin, url) if url is not None else None

    def on_host(self, url: str) -> bool:
        return urlsplit(url).netloc == urlsplit(self.origin).netloc

    async def run(self, progress: Progress | None = None) -> CrawlSummary:
        try:
            await self.fetcher.load_robots(self.start_url)
            await self.walk_thread_lists()
            await self.crawl_threads(progress)
        finally:
            await self.fetcher.aclose()
        stats = self.fetcher.stats
        return CrawlSummary(
            list_pages=self.list_pages,
            thread_pages=self.thread_pages,
            threads=self.store.thread_count(),
            posts=self.store.post_count(),
            retries=stats.retries,
            errors=dict(stats.errors),
        )

    async def walk_thread_lists(self) -> None:
        url: str | None = self.start_url
        seen: set[str] = set()
        while url and url not in seen:
            if self.config.max_list_pages and len(seen) >= self.config.max_list_pages:
                break
            if self.config.max_threads and self.store.thread_count() >= self.config.max_threads:
                break
            seen.add(url)
            walked, next_url = self.store.list_page_next(self.relative(url))
            next_url = self.absolute(next_url)
            if not walked:
                try:
                    html = await self.fetcher.get_text(url)
                except FetchFailed as exc:
                    if not seen - {url}:
                        raise ScrapeError(f"cannot fetch the forum's thread list {url}: {exc}. Check "
                                          "scrape.url and that the forum is reachable.") from None
                    break
                page = self.profile.parse_thread_list(html, url)
                threads = [
                    replace(ref, url=self.relative(ref.url)) for ref in page.threads if self.on_host(ref.url)
                ]
                if self.config.max_threads:
                    threads = threads[: max(0, self.config.max_threads - self.store.thread_count())]
                self.store.add_list_page(self.relative(url), threads, self.relative(page.next_url))
                self.list_pages += 1
                next_url = page.next_url
            url = next_url

    async def crawl_threads(self, progress: Progress | None) -> None:
        pending = self.store.threads(unfinished_only=True, limit=self.config.max_threads)
        task = progress.add_task("threads", total=len(pending)) if progress else None
        semaphore = asyncio.Semaphore(self.config.concurrency)

        async def crawl_one(thread: StoredThread) -> None:
            async with semaphore:
                await self.crawl_thread(thread)
            if progress is not None and task is not None:
                progress.update(task, advance=1, description=f"threads ({self.fetcher.stats.pages} pages)")

        await asyncio.gather(*(crawl_one(thread) for thread in pending))

    async def crawl_thread(self, thread: StoredThread) -> None:
        url = self.absolute(thread.next_page_url)
        page_number = thread.pages_fetched
        seen: set[str] = set()
        while url and page_number < self.config.max_pages_per_thread and url not in seen:
            seen.add(url)
            try:
                html = await self.fetcher.get_text(url)
            except FetchFailed:
                return  # counted in the stats; the thread stays unfinished so a rerun retries it
            page = self.profile.parse_thread_page(html, url)
            page_number += 1
            next_url = page.next_url if page.next_url not in seen else None
            done = next_url is None or page_number >= self.config.max_pages_per_thread
            self.store.add_thread_page(thread.id, page.title, page.posts, self.relative(next_url), done)
            self.thread_pages += 1
            url = next_url
        if url is None or url in seen:
            self.store.mark_thread_done(thread.id)


def crawl(config: ScrapeConfig, store_path: Path, start_url: str, *, show_progress: bool = True) -> CrawlSummary:
    """Crawl the forum into the store at store_path; safe to rerun after a kill (it resumes)."""
    with ForumStore(store_path) as store:
        crawler = Crawler(config, store, start_url)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, disable=not show_progress, transient=False) as progress:
            summary = asyncio.run(crawler.run(progress))
        if summary.threads == 0:
            raise ScrapeError(
                f"no threads found at {start_url} with site profile {config.site!r}: check scrape.url "
                "points at a thread-list page and scrape.site matches the forum's engine"
            )
        unfinished = len(store.threads(unfinished_only=True, limit=config.max_threads))
        store.set_meta(CRAWL_COMPLETE, "1" if unfinished == 0 else "0")
        return summary
