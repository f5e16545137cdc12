"""The `scrape` stage: crawl the configured forum into runs/<name>/forum.sqlite; and `--probe URL`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from rich.console import Console
from rich.markup import escape

from forumtune.config import Config
from forumtune.scrape.crawler import crawl
from forumtune.scrape.local_server import serve_folder
from forumtune.scrape.probe import print_probe, probe_page
from forumtune.scrape.summary import CrawlSummary, print_summary


@contextmanager
def forum_address(config: Config, url: str, console: Console) -> Iterator[str]:
    """The absolute URL to crawl: with scrape.serve_dir, the folder is served on 127.0.0.1 meanwhile."""
    scrape = config.scrape
    server = serve_folder(scrape.serve_dir) if scrape.serve_dir and not urlsplit(url).netloc else nullcontext(None)
    with server as base_url:
        if base_url:
            console.print(f"serving {escape(str(scrape.serve_dir))} at {escape(base_url)}")
        yield urljoin(base_url, url) if base_url else url


def run_scrape(config: Config, store_path: Path, console: Console) -> CrawlSummary:
    scrape = config.scrape
    with forum_address(config, scrape.url, console) as start_url:
        rate = f"{scrape.requests_per_second:g} req/s" if scrape.requests_per_second else "no rate limit"
        site = "auto: the first page decides" if scrape.site == "auto" else scrape.site
        console.print(f"crawling {escape(start_url)} (profile {site}, {rate}, "
                      f"{scrape.concurrency} at a time)")
        summary = crawl(scrape, store_path, start_url, show_progress=console.is_terminal, console=console)
    print_summary(summary, console)
    return summary


def run_probe(config: Config, url: str, console: Console, *, as_json: bool = False) -> None:
    with forum_address(config, url, console) as page_url:
        report = probe_page(config.scrape, page_url)
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print_probe(report, console)
