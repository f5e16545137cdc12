"""Polite HTTP fetching: robots.txt, a per-host rate limit, retries with backoff, a size cap, one host."""

from __future__ import annotations

import asyncio
import random
import time
import urllib.robotparser
from collections import Counter
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx

from forumtune.config import ScrapeConfig

RETRYABLE_STATUS = {429, 500, 502, 503, 504}


class FetchFailed(Exception):
    def __init__(self, url: str, kind: str, detail: str):
        super().__init__(f"{url}: {detail}")
        self.url, self.kind = url, kind


@dataclass
class FetchStats:
    pages: int = 0
    bytes: int = 0
    retries: int = 0
    errors: Counter[str] = field(default_factory=Counter)


class RateLimiter:
    """At most one request start per `interval` seconds for one host."""

    def __init__(self, interval: float):
        self.interval = interval
        self._next_start = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            delay = self._next_start - now
            self._next_start = max(now, self._next_start) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


def retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class Fetcher:
    def __init__(self, config: ScrapeConfig, base_url: str):
        self.config = config
        self.host = urlsplit(base_url).netloc
        self.stats = FetchStats()
        self.robots: urllib.robotparser.RobotFileParser | None = None
        self.limiter = RateLimiter(1.0 / config.requests_per_second)
        self.client = httpx.AsyncClient(
            headers={"User-Agent": config.user_agent},
            timeout=config.timeout_s,
            follow_redirects=True,
            max_redirects=5,
            limits=httpx.Limits(max_connections=config.concurrency),
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def load_robots(self, base_url: str) -> None:
        if not self.config.respect_robots:
            return
        parts = urlsplit(base_url)
        robots_url = f"{parts.scheme}://{parts.netloc}/robots.txt"
        parser = urllib.robotparser.RobotFileParser(robots_url)
        try:
            response = await self.client.get(robots_url)
        except httpx.HTTPError:
            parser.parse([])
        else:
            parser.parse(response.text.splitlines() if response.status_code == 200 else [])
        self.robots = parser
        delay = parser.crawl_delay(self.config.user_agent)
        if delay:
            self.limiter.interval = max(self.limiter.interval, float(delay))

    def allowed(self, url: str) -> bool:
        if urlsplit(url).netloc != self.host:
            return False
        return self.robots is None or self.robots.can_fetch(self.config.user_agent, url)

    async def get_text(self, url: str) -> str:
        """The page's text; raises FetchFailed after the configured retries."""
        if not self.allowed(url):
            self.stats.errors["disallowed"] += 1
            raise FetchFailed(url, "disallowed", "off the forum's host or disallowed by robots.txt")
        for attempt in range(self.config.retries + 1):
            await self.limiter.wait()
            try:
                response = await self.client.get(url)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                kind, wait, detail = "network", None, f"{type(exc).__name__}: {exc}"
            except httpx.TooManyRedirects:
                self.stats.errors["redirect_loop"] += 1
                raise FetchFailed(url, "redirect_loop", "too many redirects") from None
            else:
                if response.status_code == 200:
                    return self._accept(url, response)
                kind, detail = f"http_{response.status_code}", f"HTTP {response.status_code}"
                if response.status_code not in RETRYABLE_STATUS:
                    break
                wait = retry_after_seconds(response)
            if attempt < self.config.retries:
                self.stats.retries += 1
                backoff = wait if wait is not None else min(30.0, 0.5 * 2**attempt) * (0.5 + random.random())
                await asyncio.sleep(backoff)
        self.stats.errors[kind] += 1
        raise FetchFailed(url, kind, detail)

    def _accept(self, url: str, response: httpx.Response) -> str:
        if urlsplit(str(response.url)).netloc != self.host:
            self.stats.errors["off_host_redirect"] += 1
            raise FetchFailed(url, "off_host_redirect", f"redirected off the forum to {response.url}")
        if len(response.content) > self.config.max_page_bytes:
            self.stats.errors["too_large"] += 1
            raise FetchFailed(url, "too_large", f"page larger than scrape.max_page_bytes={self.config.max_page_bytes}")
        self.stats.pages += 1
        self.stats.bytes += len(response.content)
        return response.text
