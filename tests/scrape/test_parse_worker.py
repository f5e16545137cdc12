"""The page-parsing worker process of a fast crawl: same pages as parsing in line, and no orphan process."""

import asyncio

import pytest

from forumtune.config import ScrapeConfig
from forumtune.errors import ScrapeError
from forumtune.scrape.parse_worker import PageParser
from forumtune.scrape.sites import get_profile

URL = "http://127.0.0.1:8080/viewtopic.php?t=7"
THREAD_PAGE = (
    '<h2 class="topic-title">Edges</h2><div id="p1" class="post"><div class="postbody"><p class="author">by '
    '<a class="username">ann</a> <time datetime="2024-01-02T10:00:00+01:00">Tue</time></p><div class="content">'
    "<blockquote><cite>bob wrote:</cite>file or stone?</blockquote>Stone, then a<br>gummy stone "
    '<a href="/guide">guide</a></div><div class="signature">ann, Alta</div></div></div>'
    '<a rel="next" href="/viewtopic.php?t=7&amp;start=10">Next</a>'
)
LIST_PAGE = (
    '<ul class="topiclist topics"><li class="row"><a class="topictitle" href="/viewtopic.php?t=7">Edges</a>'
    '<dd class="posts">4</dd><dd class="lastpost"><time datetime="2024-01-03T08:00:00+00:00">Wed</time></dd></li></ul>'
)


def fast(site: str) -> ScrapeConfig:
    return ScrapeConfig(url="", site=site, requests_per_second=0)


def test_worker_reads_pages_exactly_as_parsing_in_line(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    config = fast("phpbb")
    profile = get_profile(config)

    async def through_worker() -> tuple:
        parser = PageParser(config, profile)
        await parser.start()
        assert parser.process is not None, "a crawl without rate limit on two cores parses in a worker"
        try:
            return await asyncio.gather(
                parser.parse("thread", THREAD_PAGE, URL), parser.parse("list", LIST_PAGE, URL)
            )
        finally:
            await parser.aclose()

    page, listing = asyncio.run(through_worker())
    assert page == profile.parse_thread_page(THREAD_PAGE, URL)
    assert listing == profile.parse_thread_list(LIST_PAGE, URL)
    assert page.posts[0].quotes == ["file or stone?"] and page.posts[0].links == [
        "http://127.0.0.1:8080/guide"
    ]
    assert listing.threads[0].last_post_at == "2024-01-03T08:00:00+00:00"


def test_unreadable_page_is_a_value_error_and_the_worker_ends_with_its_input(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    config = fast("discourse")

    async def run() -> int:
        parser = PageParser(config, get_profile(config))
        await parser.start()
        with pytest.raises(ValueError):  # the crawler counts it as "unparseable" and goes on
            await parser.parse("thread", "<html>not the JSON API</html>", URL)
        parser.process.stdin.close()  # what the kernel does when the crawler is killed
        return await asyncio.wait_for(parser.process.wait(), timeout=20)

    assert asyncio.run(run()) == 0


def test_a_rate_limited_crawl_parses_in_line():
    parser = PageParser(ScrapeConfig(url="", site="phpbb", requests_per_second=2), get_profile(fast("phpbb")))
    asyncio.run(parser.start())
    assert parser.process is None


def test_a_worker_that_dies_is_a_clear_error_not_a_hang(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    config = fast("phpbb")

    async def run() -> None:
        parser = PageParser(config, get_profile(config))
        await parser.start()
        parser.process.kill()
        await parser.process.wait()
        try:
            with pytest.raises(ScrapeError, match="page-parsing process stopped"):
                await asyncio.wait_for(parser.parse("thread", THREAD_PAGE, URL), timeout=20)
        finally:
            await parser.aclose()

    asyncio.run(run())
