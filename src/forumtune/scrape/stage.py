"""The `scrape` stage: crawl the configured forum into runs/<name>/forum.sqlite; and `--probe URL`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import yaml
from rich.console import Console
from rich.markup import escape

from forumtune.config import Config
from forumtune.errors import ScrapeError
from forumtune.scrape.crawler import crawl
from forumtune.scrape.local_server import serve_folder
from forumtune.scrape.probe import ProbeReport, fetch_one, print_probe, probe_page, read_page
from forumtune.scrape.sites.markup import MarkupProfile
from forumtune.scrape.suggest import Suggestion, suggest_selectors
from forumtune.scrape.summary import CrawlSummary, print_summary


@contextmanager
def forum_address(config: Config, url: str, console: Console) -> Iterator[str]:
    """The absolute URL to crawl: with scrape.serve_dir, the folder is served on 127.0.0.1 meanwhile."""
    scrape = config.scrape
    server = (
        serve_folder(scrape.serve_dir) if scrape.serve_dir and not urlsplit(url).netloc else nullcontext(None)
    )
    with server as base_url:
        if base_url:
            console.print(f"serving {escape(str(scrape.serve_dir))} at {escape(base_url)}")
        yield urljoin(base_url, url) if base_url else url


def run_scrape(config: Config, store_path: Path, console: Console) -> CrawlSummary:
    scrape = config.scrape
    with forum_address(config, scrape.url, console) as start_url:
        rate = f"{scrape.requests_per_second:g} req/s" if scrape.requests_per_second else "no rate limit"
        site = "auto: the first page decides" if scrape.site == "auto" else scrape.site
        console.print(
            f"crawling {escape(start_url)} (profile {site}, {rate}, {scrape.concurrency} at a time)"
        )
        summary = crawl(scrape, store_path, start_url, show_progress=console.is_terminal, console=console)
    print_summary(summary, console)
    return summary


def run_probe(
    config: Config, url: str, console: Console, *, as_json: bool = False, suggest: bool = False
) -> None:
    if suggest:
        run_suggest(config, url, console, as_json=as_json)
        return
    with forum_address(config, url, console) as page_url:
        report = probe_page(config.scrape, page_url)
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print_probe(report, console)


def run_suggest(config: Config, url: str, console: Console, *, as_json: bool = False) -> None:
    """Selectors for `site: generic` from the page's repeated structure, and what they read there."""
    with forum_address(config, url, console) as page_url:
        text = asyncio.run(fetch_one(config.scrape, page_url))
    suggestion = suggest_selectors(text)
    if suggestion is None:
        raise ScrapeError(
            f"--suggest found no repeated posts or thread rows at {url}: give it a thread page "
            "(or a thread list) of the forum"
        )
    reading = read_page(MarkupProfile("generic", suggestion.selectors), text, page_url)
    report = ProbeReport(page_url, "generic", suggestion.page_kind, [reading])
    if as_json:
        print(
            json.dumps(
                {
                    "page_kind": suggestion.page_kind,
                    "yaml": suggestion_yaml(suggestion),
                    "selectors": suggestion.selectors.model_dump(),
                    "reading": reading.__dict__,
                },
                indent=2,
            )
        )
        return
    console.print(escape(suggestion_yaml(suggestion)), highlight=False, soft_wrap=True)
    console.print("what these selectors read on the page:")
    print_probe(report, console)


def suggestion_yaml(suggestion: Suggestion) -> str:
    """The `scrape:` block to paste into the config: the selectors found, TODO where the page could not say."""
    fields = suggestion.selectors.model_dump(exclude_defaults=True)
    fields = {key: value for key, value in fields.items() if value not in (None, [])}
    other = "thread list" if suggestion.page_kind == "thread page" else "thread page"
    block = yaml.safe_dump(
        {"scrape": {"site": "generic", "selectors": fields}}, sort_keys=False, allow_unicode=True
    )
    return (
        f"# suggested from a {suggestion.page_kind} ({'; '.join(suggestion.notes)}); the TODO selectors come "
        f"from a {other}: run --probe on one with --suggest\n{block}"
    )
