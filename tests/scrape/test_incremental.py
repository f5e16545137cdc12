"""Re-crawls fetch only what is new; `since`, `max_threads` and `max_pages_per_thread` bound a crawl."""

from dataclasses import replace

import pytest

from tests.scrape.conftest import engine_markup, stored_posts
from tests.scrape.forums.content import CAFE, LOOPING, WAXING, Forum, Post, Thread, at

LATE_REPLY = Post(10, "ivan", at("2019-02-01"), "A late reply: the last page grows.")
NEXT_PAGE = Post(13, "lee", at("2019-02-02"), "And this one opens a new page.")
SUMMER = Post(11, "judy", at("2019-08-03"), "Yes, it is open all summer.")
NEW_THREAD = Thread(
    104, "brand-new-thread", "A brand new thread", [[Post(12, "kim", at("2020-01-01"), "Hello, all.")]]
)


def forum_a_week_later() -> Forum:
    waxing = replace(WAXING, pages=[WAXING.pages[0], [*WAXING.pages[1], LATE_REPLY], [NEXT_PAGE]])
    cafe = replace(CAFE, pages=[[*CAFE.pages[0], SUMMER]])
    return Forum().with_thread(waxing).with_thread(cafe).with_thread(NEW_THREAD)


@pytest.mark.parametrize("engine", ["phpbb", "discourse"])
def test_a_rerun_fetches_only_new_threads_and_new_pages(engine, crawl_forum, tmp_path):
    crawl_forum(engine)
    summary, log = crawl_forum(engine, forum_a_week_later())
    markup = engine_markup(engine)
    expected = [
        "/robots.txt",
        markup.list_path(1),
        markup.list_path(2),
        markup.thread_path(NEW_THREAD, 1),
        markup.thread_path(CAFE, 1),
        markup.thread_path(WAXING, 2),
        markup.thread_path(WAXING, 3),
    ]
    assert sorted(log.paths()) == sorted(expected), "the unchanged thread and finished pages are not fetched"
    assert (summary.new_threads, summary.updated_threads, summary.new_posts, summary.posts) == (1, 2, 4, 12)
    threads = stored_posts(tmp_path / "forum.sqlite")
    assert [post["author"] for post in threads["Waxing skis at home"]] == [
        "alice",
        "bob",
        "carol",
        "alice",
        "ivan",
        "lee",
    ]
    assert [post["author"] for post in threads["Café trip report"]] == ["erin", "frank", "judy"]
    assert [post["author"] for post in threads["A brand new thread"]] == ["kim"]
    assert len(threads["Looping pages"]) == 2


def test_since_skips_threads_quiet_since_before_it(crawl_forum, tmp_path):
    summary, log = crawl_forum("xenforo", since="2019-06-01")
    assert list(stored_posts(tmp_path / "forum.sqlite")) == ["Café trip report"]
    assert summary.skipped_before_since == 2
    assert not any(f".{LOOPING.id}/" in path or f".{WAXING.id}/" in path for path in log.paths())


def test_max_threads_and_max_pages_per_thread(crawl_forum, tmp_path):
    summary, log = crawl_forum("vbulletin", max_threads=2, max_pages_per_thread=1)
    assert (summary.threads, summary.list_pages, summary.thread_pages, summary.posts) == (2, 1, 2, 5)
    assert summary.unfinished_threads == 0, "a thread cut at max_pages_per_thread is finished"
    again, log = crawl_forum("vbulletin", max_threads=2, max_pages_per_thread=1)
    assert (again.threads, again.thread_pages, again.new_posts) == (2, 0, 0)
    assert not any("showthread" in path for path in log.paths())
