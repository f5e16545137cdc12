"""`forumtune scrape --probe URL`: fetch one page, read it with every site profile, say which fits."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from forumtune.config import ScrapeConfig
from forumtune.errors import ScrapeError
from forumtune.scrape.fetcher import Fetcher, FetchFailed
from forumtune.scrape.parse_worker import PARSE_ERRORS
from forumtune.scrape.sites import SiteProfile, builtin_profiles, get_profile
from forumtune.scrape.summary import CONNECTION_ADVICE

SAMPLES = 3


@dataclass
class ProfileReading:
    profile: str
    fetched_url: str
    threads: list[dict[str, str | None]] = field(default_factory=list)
    posts: list[dict[str, object]] = field(default_factory=list)
    next_url: str | None = None
    problem: str | None = None

    @property
    def score(self) -> int:
        return max(len(self.threads), len([post for post in self.posts if post["text"]]))

    @property
    def page_kind(self) -> str:
        return "thread page" if len(self.posts) >= len(self.threads) else "thread list"


@dataclass
class ProbeReport:
    url: str
    best: str | None
    page_kind: str | None
    readings: list[ProfileReading]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def candidate_profiles(config: ScrapeConfig) -> list[SiteProfile]:
    profiles = [profile for name, profile in builtin_profiles().items() if name != "demo"]
    return [*profiles, get_profile(config)] if config.site == "generic" else profiles


def read_page(profile: SiteProfile, text: str, url: str) -> ProfileReading:
    reading = ProfileReading(profile=profile.name, fetched_url=url)
    try:
        listing = profile.parse_thread_list(text, url)
        page = profile.parse_thread_page(text, url)
    except PARSE_ERRORS as exc:
        reading.problem = f"cannot read this page: {type(exc).__name__}"
        return reading
    reading.threads = [
        {"title": ref.title, "url": ref.url, "last_post_at": ref.last_post_at} for ref in listing.threads
    ]
    reading.posts = [
        {
            "author": post.author,
            "posted_at": post.posted_at,
            "text": post.text[:200],
            "quotes": len(post.quotes),
            "signature": bool(post.signature),
        }
        for post in page.posts
    ]
    reading.next_url = page.next_url if len(page.posts) >= len(listing.threads) else listing.next_url
    return reading


async def read_with_profiles(
    fetcher: Fetcher,
    profiles: list[SiteProfile],
    url: str,
) -> tuple[list[ProfileReading], dict[str, str | FetchFailed]]:
    """Every profile's reading of the page at url (each fetched once), and the fetched texts by address."""
    texts: dict[str, str | FetchFailed] = {}
    readings = []
    for profile in profiles:
        fetch_url = profile.list_url(url)  # an API address for JSON engines, else the page itself
        if fetch_url not in texts:
            try:
                texts[fetch_url] = await fetcher.get_text(fetch_url)
            except FetchFailed as failure:
                texts[fetch_url] = failure
        text = texts[fetch_url]
        if isinstance(text, FetchFailed):
            readings.append(
                ProfileReading(profile.name, fetch_url, problem=f"cannot fetch {fetch_url}: {text.kind}")
            )
        else:
            readings.append(read_page(profile, text, fetch_url))
    return sorted(readings, key=lambda r: r.score, reverse=True), texts


def best_reading(readings: list[ProfileReading]) -> ProfileReading | None:
    """The profile that reads the most threads or posts off the page (readings sorted best first)."""
    return readings[0] if readings and readings[0].score > 0 else None


async def fetch_readings(config: ScrapeConfig, url: str) -> list[ProfileReading]:
    fetcher = Fetcher(config, url)
    try:
        await fetcher.load_robots(url)
        readings, texts = await read_with_profiles(fetcher, candidate_profiles(config), url)
    finally:
        await fetcher.aclose()
    failures = [text for text in texts.values() if isinstance(text, FetchFailed)]
    if failures and len(failures) == len(texts):
        advice = CONNECTION_ADVICE.get(failures[0].kind)
        raise ScrapeError(
            f"--probe could not fetch {failures[0].url}: {failures[0].detail}"
            + (f"; {advice}" if advice else "")
        )
    return readings


async def fetch_one(config: ScrapeConfig, url: str) -> str:
    """The text of one page, fetched as the crawl would (robots.txt, retries, decoding)."""
    fetcher = Fetcher(config, url)
    try:
        await fetcher.load_robots(url)
        return await fetcher.get_text(url)
    except FetchFailed as failure:
        advice = CONNECTION_ADVICE.get(failure.kind)
        raise ScrapeError(
            f"--probe could not fetch {url}: {failure.detail}" + (f"; {advice}" if advice else "")
        ) from None
    finally:
        await fetcher.aclose()


def probe_page(config: ScrapeConfig, url: str) -> ProbeReport:
    readings = asyncio.run(fetch_readings(config, url))
    best = best_reading(readings)
    return ProbeReport(url, best.profile if best else None, best.page_kind if best else None, readings)


def print_probe(report: ProbeReport, console: Console) -> None:
    table = Table(title=f"site profiles on {escape(report.url)}", title_justify="left")
    for column in ("profile", "threads", "posts", "next page", "note"):
        table.add_column(column)
    for reading in report.readings:
        table.add_row(
            reading.profile,
            str(len(reading.threads)),
            str(len(reading.posts)),
            escape(reading.next_url or "-"),
            escape(reading.problem or ""),
        )
    console.print(table)
    if report.best is None:
        console.print(
            "no profile reads this page: give CSS selectors in scrape.selectors with scrape.site: generic"
        )
        return
    best = next(reading for reading in report.readings if reading.profile == report.best)
    console.print(
        f"best match: [bold]{report.best}[/] (a {report.page_kind}); set scrape.site: {report.best}"
    )
    if report.page_kind == "thread list":
        for thread in best.threads[:SAMPLES]:
            title, url = escape(str(thread["title"])), escape(str(thread["url"]))
            console.print(f"  thread: {title}  [dim]{url} last post {thread['last_post_at']}[/]")
    for post in best.posts[:SAMPLES] if report.page_kind == "thread page" else []:
        author, text = escape(str(post["author"])), escape(repr(str(post["text"])[:100]))
        console.print(
            f"  post by {author} at {post['posted_at']} ({post['quotes']} quotes, "
            f"signature: {'yes' if post['signature'] else 'no'}): {text}"
        )
