"""Polite HTTP fetching: robots.txt, a per-host rate limit, retries with backoff, a size cap, one host.

The client is aiohttp: its C HTTP parser costs about a sixth of the CPU per page that httpx did, and
the crawler's one event-loop thread is what limits a crawl (benchmarks/RESULTS.md, "Scraper").
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
import urllib.robotparser
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from functools import cache
from urllib.parse import urljoin, urlsplit

import aiohttp
import certifi

from forumtune.config import ScrapeConfig
from forumtune.net import ConnectionProblem, connection_problem
from forumtune.scrape.encoding import decode_page

RETRYABLE_STATUS = {429, 500, 502, 503, 504}
REDIRECT_STATUS = {301, 302, 303, 307, 308}
MAX_REDIRECTS = 5


class FetchFailed(Exception):
    def __init__(self, url: str, kind: str, detail: str):
        super().__init__(f"{url}: {detail}")
        self.url, self.kind, self.detail = url, kind, detail


class RetryableFailure(Exception):
    def __init__(self, kind: str, detail: str, wait: float | None = None):
        super().__init__(detail)
        self.kind, self.detail, self.wait = kind, detail, wait


@dataclass
class FetchStats:
    pages: int = 0
    bytes: int = 0
    retries: int = 0
    errors: Counter[str] = field(default_factory=Counter)


class RateLimiter:
    """At most one request start per `interval` seconds for one host; `pause` holds every request back."""

    def __init__(self, interval: float):
        self.interval = interval
        self._next_start = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if self.interval <= 0 and self._next_start <= time.monotonic():
            return
        async with self._lock:
            now = time.monotonic()
            delay = self._next_start - now
            self._next_start = max(now, self._next_start) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)

    def pause(self, seconds: float) -> None:
        """The server asked us to slow down (Retry-After): no request to it starts before then."""
        self._next_start = max(self._next_start, time.monotonic() + seconds)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


@cache
def tls_context() -> ssl.SSLContext:
    """Loading the CA bundle takes a noticeable fraction of a second: once per process is enough."""
    return ssl.create_default_context(cafile=certifi.where())


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter, so parallel retries do not hit the server in step."""
    return min(30.0, 0.5 * 2**attempt) * (0.5 + random.random())


class Fetcher:
    def __init__(self, config: ScrapeConfig, base_url: str):
        self.config = config
        self.host = urlsplit(base_url).netloc
        self.stats = FetchStats()
        self.robots: urllib.robotparser.RobotFileParser | None = None
        rate = config.requests_per_second
        self.limiter = RateLimiter(1.0 / rate if rate > 0 else 0.0)
        self.last_failure: FetchFailed | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """Opened on first use: aiohttp wants its session made inside the running event loop."""
        if self._session is None:
            timeout = (
                self.config.timeout_s
            )  # like httpx's: for connecting and for each read, not the whole page
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": self.config.user_agent},
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=timeout, sock_connect=timeout, sock_read=timeout
                ),
                connector=aiohttp.TCPConnector(limit=self.config.concurrency, ssl=tls_context()),
                cookie_jar=aiohttp.CookieJar(unsafe=True),  # keep a forum's session cookie even on a bare IP
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def load_robots(self, base_url: str) -> None:
        if not self.config.respect_robots:
            return
        parts = urlsplit(base_url)
        robots_url = f"{parts.scheme}://{parts.netloc}/robots.txt"
        parser = urllib.robotparser.RobotFileParser(robots_url)
        try:
            async with self.session.get(robots_url) as response:
                status, body = response.status, await response.read()
                content_type = response.headers.get("Content-Type", "")
        except (aiohttp.ClientError, TimeoutError):
            parser.parse([])
        else:
            parser.parse(decode_page(body, content_type).splitlines() if status == 200 else [])
        self.robots = parser
        delay = parser.crawl_delay(self.config.user_agent)
        if delay:
            self.limiter.interval = max(self.limiter.interval, float(delay))

    def refusal(self, url: str) -> str | None:
        """Why the crawler must not fetch url (another host, or robots.txt), or None."""
        if urlsplit(url).netloc != self.host:
            return "off_host"
        if self.robots is not None and not self.robots.can_fetch(self.config.user_agent, url):
            return "robots"
        return None

    def fail(self, url: str, kind: str, detail: str) -> FetchFailed:
        self.stats.errors[kind] += 1
        self.last_failure = FetchFailed(url, kind, detail)
        return self.last_failure

    async def get_text(self, url: str) -> str:
        """The page's text; raises FetchFailed (counted by kind) after the configured retries."""
        if kind := self.refusal(url):
            raise self.fail(
                url, kind, "off the forum's host" if kind == "off_host" else "disallowed by robots.txt"
            )
        for attempt in range(self.config.retries + 1):
            await self.limiter.wait()
            try:
                return await self.follow(url)
            except RetryableFailure as failure:
                if attempt == self.config.retries:
                    raise self.fail(url, failure.kind, failure.detail) from None
                self.stats.retries += 1
                if failure.wait is not None:
                    self.limiter.pause(min(failure.wait, self.config.max_retry_after_s))
                else:
                    await asyncio.sleep(backoff_seconds(attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def follow(self, url: str) -> str:
        """GET url, following redirects that stay on the host and allowed by robots.txt."""
        seen = [url]
        current = url
        while True:
            status, location, body, content_type = await self.fetch_once(current)
            if status not in REDIRECT_STATUS:
                break
            target = urljoin(current, location or "")
            if target in seen or len(seen) > MAX_REDIRECTS:
                raise self.fail(url, "redirect_loop", f"redirects loop or go on too long: {' → '.join(seen)}")
            if kind := self.refusal(target):
                raise self.fail(
                    url, f"redirect_{kind}", f"redirected to {target}, which is {kind.replace('_', ' ')}"
                )
            seen.append(target)
            current = target
        if status != 200:
            raise self.fail(url, f"http_{status}", f"HTTP {status}")
        self.stats.pages += 1
        self.stats.bytes += len(body)
        return decode_page(body, content_type)

    async def fetch_once(self, url: str) -> tuple[int, str | None, bytes, str]:
        """(status, Location, body, Content-Type) of one request; the body is read up to the size cap."""
        cap = self.config.max_page_bytes
        try:
            # Redirects are followed by hand, so each hop is checked against the host and robots.txt.
            async with self.session.get(url, allow_redirects=False) as response:
                if response.status in RETRYABLE_STATUS:
                    raise RetryableFailure(
                        f"http_{response.status}",
                        f"HTTP {response.status}",
                        retry_after_seconds(response.headers),
                    )
                if int(response.headers.get("Content-Length") or 0) > cap:
                    raise self.fail(url, "too_large", f"page larger than scrape.max_page_bytes={cap}")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_any():
                    size += len(chunk)
                    if size > cap:
                        raise self.fail(url, "too_large", f"page larger than scrape.max_page_bytes={cap}")
                    chunks.append(chunk)
                content_type = response.headers.get("Content-Type", "")
                return response.status, response.headers.get("Location"), b"".join(chunks), content_type
        except aiohttp.ConnectionTimeoutError:
            raise RetryableFailure(
                "timeout", f"no connection to {self.host} within scrape.timeout_s={self.config.timeout_s:g} s"
            ) from None
        except TimeoutError:  # aiohttp's read timeouts are TimeoutErrors too: caught before ClientError
            raise RetryableFailure(
                "timeout", f"{self.host} sent nothing for scrape.timeout_s={self.config.timeout_s:g} s"
            ) from None
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            raise RetryableFailure("truncated", f"the server broke off the response: {exc}")
        except aiohttp.ClientConnectorError as exc:
            problem = connector_problem(exc, self.host)
            raise RetryableFailure(problem.kind, problem.description) from None
        except aiohttp.ClientError as exc:
            raise RetryableFailure("network", f"{type(exc).__name__}: {exc}")


def connector_problem(error: aiohttp.ClientConnectorError, host: str) -> ConnectionProblem:
    """DNS, refused, TLS or another failure to connect, from aiohttp's wrapper around the OS error."""
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        return connection_problem(error.certificate_error, host)
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return ConnectionProblem("dns", f"the host name {host} does not resolve (DNS lookup failed)")
    return connection_problem(error.os_error, host)
