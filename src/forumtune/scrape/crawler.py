"""The crawl: thread-list pages first, then each thread's pages of posts, into the SQLite store.

Every crawl is a pass over the forum. A pass that was killed continues where it stopped; once a
pass has finished, the next run starts a new one that walks the thread lists again and fetches only
new threads and the new pages of threads whose last-post date or reply count changed.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from rich.console import Console

from forumtune.config import ScrapeConfig
from forumtune.errors import ScrapeError
from forumtune.forum_store import CRAWL_COMPLETE, CRAWL_PASS, SITE, ForumStore, StoredThread, ThreadRef
from forumtune.scrape.detect import choose_profile
from forumtune.scrape.fetcher import Fetcher, FetchFailed
from forumtune.scrape.models import ThreadListPage, ThreadPage
from forumtune.scrape.parse_worker import PARSE_ERRORS, PageParser
from forumtune.scrape.progress import CrawlDisplay
from forumtune.scrape.sites import AUTO, SiteProfile, get_profile
from forumtune.scrape.summary import CrawlSummary, first_list_failure


def relative(url: str | None) -> str | None:
    """Store URLs without scheme and host, so a forum served on another port still resumes, and without
    a session id, which forums put in every link for a visitor without cookies (SMF's PHPSESSID, phpBB's
    sid, vBulletin's s): the same page would otherwise have a new address on every visit."""
    if url is None:
        return None
    parts = urlsplit(url)
    query = "&".join(pair for pair in parts.query.split("&") if pair and not SESSION_ID.fullmatch(pair))
    return parts.path + (f"?{query}" if query else "")


SESSION_ID = re.compile(r"(?:PHPSESSID=\w+|(?:sid|s)=[0-9a-f]{32})", re.IGNORECASE)


class Crawler:
    def __init__(
        self,
        config: ScrapeConfig,
        store: ForumStore,
        start_url: str,
        display: CrawlDisplay | None = None,
        console: Console | None = None,
    ):
        self.config = config
        self.store = store
        self.console = console
        self.profile: SiteProfile | None = (
            get_profile(config) if config.site != AUTO else None
        )  # None: undecided
        self.start_url = self.profile.list_url(start_url) if self.profile else start_url
        self.fetcher = Fetcher(config, self.start_url)
        self.parser: PageParser | None = None
        self.prefetched: dict[str, str] = {}  # pages read to choose the profile, not fetched twice
        self.origin = "{0.scheme}://{0.netloc}".format(urlsplit(self.start_url))
        self.display = display
        self.since = config.since.isoformat() if config.since else None
        self.counts = {
            "list_pages": 0,
            "thread_pages": 0,
            "new_threads": 0,
            "updated_threads": 0,
            "skipped_before_since": 0,
        }
        self.threads_done = 0

    def absolute(self, url: str | None) -> str | None:
        return urljoin(self.origin, url) if url is not None else None

    def on_host(self, url: str) -> bool:
        return urlsplit(url).netloc == urlsplit(self.origin).netloc

    def error(self, kind: str) -> None:
        self.fetcher.stats.errors[kind] += 1

    def on_host_or_none(self, next_url: str | None) -> str | None:
        """A next-page link to another site ends the walk there: the crawler never leaves the forum."""
        if next_url is not None and not self.on_host(next_url):
            self.error("off_host")
            return None
        return next_url

    async def run(self) -> None:
        try:
            await self.fetcher.load_robots(self.start_url)
            profile = await self.settle_profile()  # may settle scrape.site too, which the parser reads
            self.parser = PageParser(self.config, profile)
            await self.parser.start()
            await self.walk_thread_lists()
            await self.crawl_threads()
        finally:
            await self.fetcher.aclose()
            if self.parser is not None:
                await self.parser.aclose()

    async def settle_profile(self) -> SiteProfile:
        """With scrape.site: auto, the first page decides (as `--probe` would), once per store: a resumed or
        incremental crawl reads the forum with the profile its first pass chose. The choice is kept in the
        store's meta either way."""
        if self.config.site == AUTO:
            name = self.store.get_meta(SITE)
            if name is None:
                errors = (
                    self.fetcher.stats.errors.copy()
                )  # an engine's API address missing here is no crawl error
                name, self.prefetched = await choose_profile(self.fetcher, self.config, self.start_url)
                self.fetcher.stats.errors = errors
                if self.console is not None:
                    self.console.print(f"scrape.site auto: the first page reads best as [bold]{name}[/]")
            self.config = self.config.model_copy(update={"site": name})
            self.profile = get_profile(self.config)
            self.start_url = self.profile.list_url(self.start_url)
        self.store.set_meta(SITE, self.config.site)
        assert self.profile is not None
        return self.profile

    async def fetch_parsed(self, url: str, kind: str) -> ThreadListPage | ThreadPage | None:
        """Fetch and parse one page ("list" or "thread"); None (the error counted) when either fails."""
        try:
            text = self.prefetched.pop(url, None) or await self.fetcher.get_text(url)
        except FetchFailed:
            return None
        try:
            assert self.parser is not None, "run() starts the parser before any page"
            return await self.parser.parse(kind, text, url)
        except PARSE_ERRORS:
            self.error("unparseable")
            return None

    async def walk_thread_lists(self) -> None:
        url: str | None = self.start_url
        seen: set[str] = set()
        while url:
            if url in seen:
                self.error("pagination_loop")
                break
            if self.config.max_list_pages and len(seen) >= self.config.max_list_pages:
                break
            seen.add(url)
            walked, next_url = self.store.list_page_next(relative(url))
            if walked:
                url = self.absolute(next_url)
                continue
            page = await self.fetch_parsed(url, "list")
            if page is None:
                if len(seen) == 1:
                    raise ScrapeError(first_list_failure(url, self.fetcher.last_failure))
                break
            if not self.store_list_page(url, page):
                break
            url = self.on_host_or_none(page.next_url)

    def store_list_page(self, url: str, page: ThreadListPage) -> bool:
        """Store the page's threads; False when the walk should stop here (limits, or older than since)."""
        threads = [ref for ref in page.threads if self.on_host(ref.url)]
        recent = [ref for ref in threads if not self.before_since(ref)]
        self.counts["skipped_before_since"] += len(threads) - len(recent)
        refs = [replace(ref, url=relative(ref.url)) for ref in recent]
        changes = self.store.add_list_page(
            relative(url), refs, relative(page.next_url), max_threads=self.config.max_threads
        )
        self.counts["list_pages"] += 1
        self.counts["new_threads"] += changes.new
        self.counts["updated_threads"] += changes.reopened
        if self.display:
            self.display.update(self.fetcher.stats)
        if threads and not recent:
            return False  # lists are newest first: every later page is older still
        full = self.config.max_threads is not None and self.store.thread_count() >= self.config.max_threads
        return not full or (self.store.crawl_pass() > 1 and changes.known > 0)

    def before_since(self, ref: ThreadRef) -> bool:
        return self.since is not None and ref.last_post_at is not None and ref.last_post_at[:10] < self.since

    async def crawl_threads(self) -> None:
        pending = self.store.threads(unfinished_only=True, limit=self.config.max_threads)
        if self.display:
            self.display.start_threads(len(pending))
        semaphore = asyncio.Semaphore(self.config.concurrency)

        async def crawl_one(thread: StoredThread) -> None:
            async with semaphore:
                await self.crawl_thread(thread)
            self.threads_done += 1
            if self.display:
                self.display.update(self.fetcher.stats, self.threads_done)

        await asyncio.gather(*(crawl_one(thread) for thread in pending))

    async def crawl_thread(self, thread: StoredThread) -> None:
        """Fetch the thread's pages from where it stopped; it stays unfinished (retried next run) on errors."""
        stored_pages = self.store.page_urls(thread.id)
        url, number = self.absolute(thread.next_page_url), thread.pages_fetched
        while url is not None and number < self.config.max_pages_per_thread:
            page = await self.fetch_parsed(url, "thread")
            if page is None:
                return
            if not page.posts:
                self.error("no_posts")
                return
            number += 1
            if self.repeats_earlier_page(thread.id, number, page):
                self.error("pagination_loop")
                break
            next_url = self.on_host_or_none(page.next_url)
            if next_url is not None and (relative(next_url) in stored_pages or next_url == url):
                self.error("pagination_loop")
                next_url = None
            done = next_url is None or number >= self.config.max_pages_per_thread
            self.store.add_thread_page(
                thread.id, page.title, page.posts, relative(next_url), done, page_url=relative(url)
            )
            stored_pages.add(relative(url) or "")
            self.counts["thread_pages"] += 1
            url = next_url
        self.store.mark_thread_done(thread.id)

    def repeats_earlier_page(self, thread_id: int, number: int, page: ThreadPage) -> bool:
        """A "next" page that only shows posts already stored (page=99 answered with the last page)."""
        ids = {post.external_id for post in page.posts if post.external_id}
        return number > 1 and bool(ids) and ids <= self.store.post_ids(thread_id, before_page=number)


def start_pass(store: ForumStore) -> None:
    """A finished crawl makes the next run a new, incremental pass; an unfinished one is resumed."""
    if store.crawl_pass() == 0 or store.crawl_complete():
        store.set_meta(CRAWL_PASS, str(store.crawl_pass() + 1))
        store.set_meta(CRAWL_COMPLETE, "0")


def crawl(
    config: ScrapeConfig,
    store_path: Path,
    start_url: str,
    *,
    show_progress: bool = True,
    console: Console | None = None,
) -> CrawlSummary:
    """Crawl the forum into the store at store_path; safe to rerun after a kill (it resumes)."""
    started = time.monotonic()
    with ForumStore(store_path) as store:
        start_pass(store)
        posts_before = store.post_count()
        with CrawlDisplay(console, show_progress) as display:
            crawler = Crawler(config, store, start_url, display, console)
            asyncio.run(crawler.run())
        if store.thread_count() == 0:
            raise ScrapeError(
                f"no threads found at {start_url} with site profile {crawler.config.site!r}: check scrape.url "
                "points at a thread-list page and scrape.site matches the forum's engine "
                "(`forumtune scrape CONFIG --probe URL` shows what each profile reads there)"
            )
        unfinished = len(store.threads(unfinished_only=True, limit=config.max_threads))
        store.set_meta(CRAWL_COMPLETE, "1" if unfinished == 0 else "0")
        stats = crawler.fetcher.stats
        return CrawlSummary(
            threads=store.thread_count(),
            posts=store.post_count(),
            retries=stats.retries,
            errors=dict(stats.errors),
            new_posts=store.post_count() - posts_before,
            unfinished_threads=unfinished,
            seconds=round(time.monotonic() - started, 2),
            bytes=stats.bytes,
            **crawler.counts,
        )
