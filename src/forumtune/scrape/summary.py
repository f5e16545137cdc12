"""What a crawl did: pages, threads, posts, errors by kind; printed as a table or written as JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from rich.console import Console
from rich.table import Table

from forumtune.scrape.fetcher import FetchFailed

# What to do about each kind of failure; the connection kinds come from forumtune.net.
CONNECTION_ADVICE = {
    "dns": "check the host name in scrape.url, and this machine's network connection and DNS",
    "refused": "check the address and port in scrape.url, and that the forum's server is running",
    "timeout": "raise scrape.timeout_s, or lower scrape.concurrency",
    "tls": "check that scrape.url names the forum's own host, and this machine's clock and CA certificates",
    "unreachable": "check this machine's network connection (and any proxy or firewall)",
    "network": "check the network connection; the next run retries these pages",
}
ERROR_ADVICE = {
    **CONNECTION_ADVICE,
    "http_429": "the forum asks for fewer requests: lower scrape.requests_per_second",
    "robots": "robots.txt disallows these pages; they are skipped",
    "off_host": "links to other sites are never followed",
    "too_large": "raise scrape.max_page_bytes if these pages are real",
    "unparseable": "the site profile cannot read these pages: check scrape.site with --probe",
    "no_posts": "thread pages without posts: check scrape.site with --probe",
    "pagination_loop": "the forum's next-page links lead back to pages already read; the thread stops there",
}


@dataclass
class CrawlSummary:
    list_pages: int
    thread_pages: int
    threads: int
    posts: int
    retries: int
    errors: dict[str, int]
    new_threads: int = 0
    updated_threads: int = 0
    new_posts: int = 0
    skipped_before_since: int = 0
    unfinished_threads: int = 0
    seconds: float = 0.0
    bytes: int = 0
    pages_per_second: float = field(init=False)

    def __post_init__(self) -> None:
        pages = self.list_pages + self.thread_pages
        self.pages_per_second = round(pages / self.seconds, 1) if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def print_summary(summary: CrawlSummary, console: Console) -> None:
    table = Table(title="crawl summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row(
        "pages fetched",
        f"{summary.list_pages} lists + {summary.thread_pages} thread pages "
        f"in {summary.seconds:.1f} s ({summary.pages_per_second:g} pages/s)",
    )
    table.add_row(
        "threads",
        f"{summary.threads} in the store ({summary.new_threads} new, "
        f"{summary.updated_threads} with new posts, {summary.unfinished_threads} unfinished)",
    )
    table.add_row("posts", f"{summary.posts} in the store ({summary.new_posts} new)")
    if summary.skipped_before_since:
        table.add_row("skipped", f"{summary.skipped_before_since} threads quiet since before scrape.since")
    table.add_row("retries", str(summary.retries))
    for kind, count in sorted(summary.errors.items()):
        advice = ERROR_ADVICE.get(kind, "")
        table.add_row(f"error: {kind}", f"{count}" + (f"  [dim]{advice}[/dim]" if advice else ""))
    console.print(table)
    if summary.unfinished_threads:
        console.print(
            f"{summary.unfinished_threads} threads are unfinished: run the same command again to "
            "retry them (finished pages are not fetched twice)"
        )


def first_list_failure(url: str, failure: FetchFailed | None) -> str:
    """Why the crawl cannot start: what went wrong with the first thread-list page, and what to check."""
    if failure is not None and failure.url == url and failure.kind in CONNECTION_ADVICE:
        advice = CONNECTION_ADVICE[failure.kind]
        return f"cannot read the forum's thread list {url}: {failure.detail}; {advice}"
    what = failure.detail if failure is not None and failure.url == url else "the page cannot be read"
    return (
        f"cannot read the forum's thread list {url}: {what}. Check scrape.url, scrape.site and that "
        "the forum is reachable; `forumtune scrape CONFIG --probe URL` shows what each site profile reads "
        "there."
    )
