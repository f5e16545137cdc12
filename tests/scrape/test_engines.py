"""Each engine's fixture forum, crawled over real HTTP: every engine must store the same posts."""

import pytest

from forumtune.config import ScrapeConfig
from forumtune.scrape.probe import probe_page
from tests.scrape.conftest import ENGINES, engine_markup, stored_posts
from tests.scrape.forums.content import ANSWER, ASK, CAFE, WAXING, Forum, write_forum
from tests.scrape.forums.server import serve_forum

SIGNATURE = "-- alice, Tahoe local"
# What each engine's default markup shows of a post's reception: likes of the waxing thread's posts
# (the deleted one skipped), and whether an accepted answer is marked. HTML engines show a like count only
# once there is one: a page where some post shows it gives the others 0; page 2 shows none, so unknown.
LIKES = {
    "xenforo": [0, 5, 1, None],
    "vbulletin": [0, 5, 1, None],
    "discourse": [0, 5, 1, 0],
    "invision": [0, 5, 1, None],
}
ACCEPTED = {"discourse": [0, 1, 0, 0]}


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_forum_is_stored_post_for_post(engine, crawl_forum, tmp_path):
    summary, log = crawl_forum(engine)
    assert (summary.threads, summary.posts, summary.list_pages, summary.thread_pages) == (3, 8, 2, 5)
    assert summary.errors == {"pagination_loop": 1}, "the looping thread stops where its pages lead back"
    assert summary.unfinished_threads == 0
    assert len(log.paths()) == len(set(log.paths())), "no page is fetched twice"
    assert not any("elsewhere" in path for path in log.paths())

    threads = stored_posts(tmp_path / "forum.sqlite")
    assert list(threads) == ["Café trip report", "Waxing skis at home", "Looping pages"]
    waxing = threads["Waxing skis at home"]
    assert [post["author"] for post in waxing] == ["alice", "bob", "carol", "alice"], (
        "the deleted post is skipped"
    )
    opening, answer, nested, thanks = waxing
    assert opening["text"] == f"Finally bought an iron. {ASK}"
    assert opening["posted_at"] == "2019-01-07T19:50:00+00:00"
    if engine != "discourse":  # Discourse has no signatures
        assert opening["signature"] == thanks["signature"] == SIGNATURE
    assert SIGNATURE not in opening["text"]
    assert answer["text"] == ANSWER, "quote and edit notice are kept apart from the post's own words"
    assert answer["quotes"] == [ASK]
    assert nested["quotes"] == [ANSWER], "a quote keeps the quoted post's words, not what that post quoted"
    assert nested["text"] == "Agreed, and scrape it thin."
    assert thanks["text"] == "Thanks! I found a guide on this page."
    assert thanks["links"] == ["https://example.org/wax-guide"]
    assert [post["likes"] for post in waxing] == LIKES.get(engine, [None] * 4)
    assert [post["accepted"] for post in waxing] == ACCEPTED.get(engine, [None] * 4)
    assert {post["score"] for post in waxing} == {None}, "no engine here shows up/down votes"

    cafe = threads["Café trip report"]
    assert [post["text"] for post in cafe] == [post.words for post in CAFE.posts], "windows-1252 pages decode"
    assert [post["text"] for post in threads["Looping pages"]] == [
        "Page one of a thread whose pagination loops.",
        "Page two links back to page one.",
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_probe_names_the_engine_of_a_list_and_a_thread_page(engine, tmp_path):
    markup = engine_markup(engine)
    write_forum(markup, Forum(), tmp_path)
    config = ScrapeConfig(url="", requests_per_second=0)
    with serve_forum(tmp_path) as (base_url, _):
        listing = probe_page(config, base_url + markup.list_path(1).replace(".json", ""))
        thread = probe_page(config, base_url + markup.thread_path(WAXING, 1))
    assert (listing.best, listing.page_kind) == (engine, "thread list")
    assert (thread.best, thread.page_kind) == (engine, "thread page")
    best = next(reading for reading in thread.readings if reading.profile == engine)
    assert [post["author"] for post in best.posts] == ["alice", "bob", "carol"]
    assert best.next_url is not None and best.next_url.endswith(markup.thread_path(WAXING, 2))
