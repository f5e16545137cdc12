"""Fault injection on a real server: slow, failing, rate-limiting, truncating and redirecting pages."""

from forumtune.config import ScrapeConfig
from forumtune.scrape.crawler import crawl
from tests.scrape.conftest import stored_posts
from tests.scrape.forums import phpbb
from tests.scrape.forums.content import CAFE as CAFE_THREAD
from tests.scrape.forums.content import OFF_HOST_ROW, Forum, Row, at, write_forum, write_page
from tests.scrape.forums.server import Fault, serve_forum

LIST_1, LIST_2 = phpbb.list_path(1), phpbb.list_path(2)
WAXING_1, WAXING_2, CAFE = "/viewtopic.php?t=101", "/viewtopic.php?t=101&start=10", "/viewtopic.php?t=102"
BROKEN_THREADS = ["/circle", "/away", "/huge", "/gone"]


def faulty_forum() -> Forum:
    rows = [Row(path, f"Broken thread {path}", "x", at("2018-01-01"), 0) for path in BROKEN_THREADS]
    return Forum(extra_rows=[OFF_HOST_ROW, *rows])


def faults(elsewhere: str) -> dict[str, list[Fault]]:
    return {
        LIST_1: [Fault(status=429, retry_after="1")],
        LIST_2: [Fault(status=503)],
        WAXING_1: [Fault(status=500), Fault(status=500)],
        WAXING_2: [Fault(truncate=True)],
        CAFE: [Fault(stall_s=1.2)],
        "/circle": [Fault(redirect_to="/circle-2")] * 3,
        "/circle-2": [Fault(redirect_to="/circle")] * 3,
        "/away": [Fault(redirect_to=f"{elsewhere}/stolen/")] * 3,
        "/huge": [Fault(huge_bytes=20_000)] * 3,
    }


def test_faults_are_retried_or_counted_and_a_rerun_retries_only_what_failed(tmp_path):
    write_forum(phpbb, faulty_forum(), tmp_path / "forum")
    (tmp_path / "elsewhere").mkdir()
    config = ScrapeConfig(
        url="",
        site="phpbb",
        requests_per_second=0,
        concurrency=4,
        timeout_s=0.5,
        retries=3,
        max_page_bytes=10_000,
    )
    store = tmp_path / "forum.sqlite"
    with (
        serve_forum(tmp_path / "elsewhere") as (elsewhere, other_log),
        serve_forum(tmp_path / "forum", faults(elsewhere)) as (base_url, log),
    ):
        summary = crawl(config, store, base_url + LIST_1, show_progress=False)
        first_run = len(log.requests)
        again = crawl(config, store, base_url + LIST_1, show_progress=False)
    assert summary.errors == {
        "pagination_loop": 1,
        "redirect_loop": 1,
        "redirect_off_host": 1,
        "too_large": 1,
        "http_404": 1,
    }
    assert summary.retries == 6, "429, 503, 500 twice, a truncated body and a timeout are each retried"
    assert (summary.threads, summary.posts, summary.unfinished_threads) == (7, 8, 4)
    assert [len(posts) for posts in stored_posts(store).values()] == [2, 4, 2], (
        "every retried page arrived whole"
    )
    first_try, second_try = log.times(LIST_1)
    assert second_try - first_try >= 0.95, "Retry-After: 1 is honoured"
    assert other_log.requests == [], "no request ever leaves the forum's host"
    rerun = [path for _, path in log.requests[first_run:]]
    assert sorted(set(rerun) - {"/robots.txt"}) == sorted([*BROKEN_THREADS, "/circle-2"]), (
        "a rerun of an unfinished crawl fetches only the pages that failed"
    )
    assert (again.posts, again.new_posts, again.unfinished_threads) == (8, 0, 4)


def test_a_next_page_link_to_another_site_ends_the_walk_there(tmp_path):
    write_forum(phpbb, Forum(), tmp_path / "forum")
    rows = [
        Row(phpbb.thread_path(thread, 1), thread.title, "x", thread.last_post_at, 1)
        for thread in (CAFE_THREAD,)
    ]
    write_page(
        tmp_path / "forum",
        LIST_1,
        phpbb.render_list(rows, "http://elsewhere.invalid/list?page=2", 1),
        "utf-8",
    )
    config = ScrapeConfig(url="", site="phpbb", requests_per_second=0)
    with serve_forum(tmp_path / "forum") as (base_url, log):
        summary = crawl(config, tmp_path / "forum.sqlite", base_url + LIST_1, show_progress=False)
    assert (summary.list_pages, summary.threads, summary.errors) == (1, 1, {"off_host": 1})
    assert LIST_2 not in log.paths()
