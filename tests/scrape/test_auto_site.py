"""`scrape.site: auto` (the default): the first page decides the profile, the store keeps the choice."""

import pytest
from rich.console import Console

from forumtune.config import ScrapeConfig
from forumtune.errors import ScrapeError
from forumtune.forum_store import SITE, ForumStore
from forumtune.scrape.crawler import crawl
from tests.scrape.conftest import ENGINES, FAST, engine_markup, stored_posts
from tests.scrape.forums.content import Forum, write_forum
from tests.scrape.forums.server import serve_forum


def test_auto_is_the_default():
    assert ScrapeConfig(url="/").site == "auto"


@pytest.mark.parametrize("engine", ENGINES)
def test_auto_picks_each_engine_and_keeps_the_choice_in_the_store(engine, tmp_path):
    markup = engine_markup(engine)
    write_forum(markup, Forum(), tmp_path / "forum")
    store = tmp_path / "forum.sqlite"
    with serve_forum(tmp_path / "forum") as (base_url, log):
        summary = crawl(
            ScrapeConfig(url="", **FAST), store, base_url + markup.list_path(1), show_progress=False
        )
    assert (summary.threads, summary.posts) == (3, 8), "the same posts as with the engine named"
    assert len(log.paths()) == len(set(log.paths())), "the page that decided is not fetched again"
    with ForumStore(store) as opened:
        assert opened.get_meta(SITE) == engine
    assert [post["author"] for post in stored_posts(store)["Waxing skis at home"]] == [
        "alice",
        "bob",
        "carol",
        "alice",
    ]


def test_a_later_crawl_reads_with_the_profile_the_first_one_chose(tmp_path):
    markup = engine_markup("xenforo")
    write_forum(markup, Forum(), tmp_path / "forum")
    store = tmp_path / "forum.sqlite"
    with serve_forum(tmp_path / "forum") as (base_url, log):
        crawl(ScrapeConfig(url="", **FAST), store, base_url + markup.list_path(1), show_progress=False)
        first = len(log.paths())
        crawl(ScrapeConfig(url="", **FAST), store, base_url + markup.list_path(1), show_progress=False)
    again = log.paths()[first:]
    assert again.count(markup.list_path(1)) == 1, "no second look at the first page to decide again"
    assert not any(path.endswith(".json") for path in again), "no JSON engine is tried on the next pass"


def test_demo_forum_is_read_by_the_layout_it_is_written_in_and_the_choice_is_logged(forum_server, tmp_path):
    base_url, _ = forum_server
    url = f"{base_url}/forums/freeski/"
    console = Console(record=True, width=200)
    summary = crawl(
        ScrapeConfig(url=url, **FAST), tmp_path / "f.sqlite", url, show_progress=False, console=console
    )
    assert (summary.threads, summary.posts) == (81, 721)
    assert "scrape.site auto: the first page reads best as newschoolers" in console.export_text()
    with ForumStore(tmp_path / "f.sqlite") as store:
        assert store.get_meta(SITE) == "newschoolers"


def test_a_page_no_profile_reads_says_what_to_do(tmp_path):
    (tmp_path / "forum").mkdir()
    (tmp_path / "forum" / "index.html").write_text("<html><body><p>Just a home page.</p></body></html>")
    with serve_forum(tmp_path / "forum") as (base_url, _), pytest.raises(ScrapeError, match="--probe URL"):
        crawl(ScrapeConfig(url="", **FAST), tmp_path / "f.sqlite", base_url + "/", show_progress=False)
