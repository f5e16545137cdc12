"""The `scrape` stage: crawl the configured forum into runs/<name>/forum.sqlite."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from urllib.parse import urljoin

from rich.console import Console

from forumtune.config import Config
from forumtune.scrape.crawler import CrawlSummary, crawl
from forumtune.scrape.local_server import serve_folder


def run_scrape(config: Config, store_path: Path, console: Console) -> CrawlSummary:
    scrape = config.scrape
    server = serve_folder(scrape.serve_dir) if scrape.serve_dir else nullcontext(None)
    with server as base_url:
        start_url = urljoin(base_url, scrape.url) if base_url else scrape.url
        if base_url:
            console.print(f"serving {scrape.serve_dir} at {base_url}")
        console.print(f"crawling {start_url} (profile {scrape.site}, {scrape.requests_per_second:g} req/s)")
        summary = crawl(scrape, store_path, start_url, show_progress=console.is_terminal)
    errors = ", ".join(f"{kind}: {count}" for kind, count in sorted(summary.errors.items())) or "none"
    console.print(
        f"scraped {summary.threads} threads, {summary.posts} posts "
        f"({summary.list_pages} list pages, {summary.thread_pages} thread pages fetched now; "
        f"retries {summary.retries}; errors {errors})"
    )
    return summary
