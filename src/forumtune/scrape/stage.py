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
from forumtune.scrape.sites.html import selector_alternatives
from forumtune.scrape.sites.markup import MarkupProfile
from forumtune.scrape.suggest import Suggestion, suggest_selectors
from forumtune.scrape.summary import CrawlSummary, print_summary

THREAD_LIST, THREAD_PAGE = "thread list", "thread page"  # the kinds of page a suggestion comes from
LIST_AND_THREAD = "thread list and thread page"


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
    """Selectors for `site: generic` from the page's repeated structure, and what they read there. Given a
    thread list, the first thread it links is read too, so the block printed is a whole working config."""
    with forum_address(config, url, console) as page_url:
        text = asyncio.run(fetch_one(config.scrape, page_url))
        suggestion = suggest_selectors(text)
        if suggestion is None:
            raise ScrapeError(
                f"--suggest found no repeated posts or thread rows at {url}: give it a thread list "
                "(or a thread page) of the forum"
            )
        pages = [(page_url, text, suggestion.page_kind)]
        if suggestion.page_kind == THREAD_LIST:
            suggestion, pages = with_first_thread(config, suggestion, pages)
    profile = MarkupProfile("generic", suggestion.selectors)
    reports = [
        ProbeReport(address, "generic", kind, [read_page(profile, page, address)])
        for address, page, kind in pages
    ]
    if as_json:
        print(
            json.dumps(
                {
                    "page_kind": suggestion.page_kind,
                    "yaml": suggestion_yaml(suggestion),
                    "selectors": suggestion.selectors.model_dump(),
                    "reading": reports[0].readings[0].__dict__,
                    "readings": [report.readings[0].__dict__ for report in reports],
                },
                indent=2,
            )
        )
        return
    console.print(escape(suggestion_yaml(suggestion)), highlight=False, soft_wrap=True)
    for report in reports:
        console.print(f"what these selectors read on the {report.page_kind}:")
        print_probe(report, console)


def with_first_thread(
    config: Config, listing: Suggestion, pages: list[tuple[str, str, str]]
) -> tuple[Suggestion, list[tuple[str, str, str]]]:
    """The list's selectors joined with those of the first thread it links (fetched, within the served
    forum), and the pages read; the list's alone where that thread reads as no thread page."""
    list_url, list_text, _ = pages[0]
    threads = MarkupProfile("generic", listing.selectors).parse_thread_list(list_text, list_url).threads
    if not threads:
        return listing, pages
    try:
        thread_text = asyncio.run(fetch_one(config.scrape, threads[0].url))
    except ScrapeError:  # the list's half still stands; its TODOs say to --suggest on a thread page
        return listing, pages
    thread = suggest_selectors(thread_text)
    if thread is None or thread.page_kind != THREAD_PAGE:
        return listing, pages
    rows, posts = listing.selectors, thread.selectors
    # One next-page selector serves both kinds of page: each alternative is tried in turn.
    alternatives = [
        alt for found in (rows.next_page, posts.next_page) if found for alt in selector_alternatives(found)
    ]
    selectors = posts.model_copy(
        update={
            "thread_row": rows.thread_row,
            "thread_link": rows.thread_link,
            "thread_last_post": rows.thread_last_post,
            "thread_replies": rows.thread_replies,
            "next_page": ", ".join(dict.fromkeys(alternatives)) or None,
        }
    )
    both = Suggestion(LIST_AND_THREAD, selectors, [*listing.notes, *thread.notes])
    return both, [*pages, (threads[0].url, thread_text, THREAD_PAGE)]


def suggestion_yaml(suggestion: Suggestion) -> str:
    """The `scrape:` block to paste into the config: the selectors found, TODO where the page could not say."""
    fields = suggestion.selectors.model_dump(exclude_defaults=True)
    fields = {key: value for key, value in fields.items() if value not in (None, [])}
    other = "thread list" if suggestion.page_kind == "thread page" else "thread page"
    block = yaml.safe_dump(
        {"scrape": {"site": "generic", "selectors": fields}}, sort_keys=False, allow_unicode=True
    )
    if suggestion.page_kind == LIST_AND_THREAD:
        return f"# suggested from a thread list and its first thread ({'; '.join(suggestion.notes)})\n{block}"
    return (
        f"# suggested from a {suggestion.page_kind} ({'; '.join(suggestion.notes)}); the TODO selectors come "
        f"from a {other}: run --probe on one with --suggest\n{block}"
    )
