"""Real saved thread pages of live forums (tests/scrape/fixtures, sources in its README), served over
HTTP: `site: auto` names the engine, and its profile reads every post, quotes and signatures apart."""

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from forumtune.config import ScrapeConfig
from forumtune.scrape.crawler import relative
from forumtune.scrape.detect import choose_profile
from forumtune.scrape.encoding import decode_page
from forumtune.scrape.fetcher import Fetcher
from forumtune.scrape.sites import builtin_profiles
from tests.scrape.forums.server import serve_forum

FIXTURES = Path(__file__).parent / "fixtures"


@dataclass(frozen=True)
class SavedPage:
    file: str
    engine: str
    posts: int  # counted in the saved HTML by each engine's post container
    authors: list[str]  # of the first four posts
    next_page: str | None  # how the next page's address ends
    quoting: tuple[int, str, str]  # a post that quotes: its index, how its quote and its own words start
    signed: tuple[int, str]  # a post with a signature: its index, how the signature starts
    likes: list[int | None] | None = None
    url: str = "http://127.0.0.1/thread"  # the address it is read at: a JSON page's number is in it


PAGES = [
    SavedPage(
        "vbulletin-3.8.html",
        "vbulletin",
        20,
        ["Shirohige", "BBOvenGuy", "Romanticide", "Shirohige"],
        "showthread.php?t=128882&page=153",
        (1, "So what I got from Yamada's answer", "That's a rather loose interpretation"),
        (4, "How Suetsugu Yuki drew the cover"),
    ),
    SavedPage(
        "vbulletin-4.2.html",
        "vbulletin",
        10,
        ["Rainmaker", "Mjölnir", "sandsjames", "Mjölnir"],
        "9687-Legendary-military-columnist-author-Bob-Dorr-dies-at-76/page2",
        (4, ".  Some great conversations.", "and who could forget"),
        (1, "The most important six inches on the battlefield"),
    ),
    SavedPage(
        "vbulletin-5.5.html",
        "vbulletin",
        15,
        ["Buckeye", "Buckeye", "General Hentai", "Buckeye"],
        "727744-isekai-quartet-discussion-thread/page2",
        (2, "Episode 1\n\n\n\nFour-in-one.", "Re: Episode 1"),
        (0, "MyAnimeList | Avatar: Lecia Ivyred"),
    ),
    SavedPage(
        "xenforo-1.html",
        "xenforo",
        25,
        ["TheBleachDoctor", "Crow", "TheBleachDoctor", "Higure"],
        "threads/renascence-a-homura-quest.10402/page-55",
        (1, "Okay, I need rolls for OOC behavior.", "OOC behavior? which part?"),
        (0, "OVERLORDKITTEN CABAL"),
    ),
    SavedPage(
        "xenforo-2.html",
        "xenforo",
        8,
        ["dieketzer", "krstep", "dieketzer", "anotheralias"],
        None,
        (-1, "", ""),
        (-1, ""),
        likes=[15, 1, 1, 1, 0, 0, 1, 0],
    ),  # "Niro, Dadparvar, siONtI and 12 others"
    SavedPage(
        "smf-2.0-topic.html",
        "smf",
        25,
        ["empo444", "DopeMaN", "empo444", "F41RPL4Y3R"],
        "index.php/topic,66925.25.html?PHPSESSID=5d3921993f17409aecea3d369102b502",  # not <link rel=next>
        (8, "Itt a megfejtés", "Persze de most nem a kedves"),
        (8, "Account lopó oldalak"),
    ),
    SavedPage(
        "phpbb-3.0.html",
        "phpbb",
        25,
        ["Jakob", "promethean75", "Urwrongx1000", "Jakob"],
        "viewtopic.php?f=1&t=194998&start=50",
        (4, "I don't know if you've read this thread", "But then if non living things are excluded"),
        (0, "For behold, all acts of love and pleasure are my rituals"),
    ),
    SavedPage(
        "invision-4-neowin.html",
        "invision",
        11,
        ["Wanyoike Alex", "+Raze", "Wanyoike Alex", "+Human.Online"],  # "+" is the theme's subscriber mark
        None,  # a one-page topic
        (8, "Hello and welcome. Feel free to post", "Thank you very much... Y'all making me feel"),
        (-1, ""),  # signatures are not shown to guests there
        likes=[0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1],
    ),
    SavedPage(
        "invision-4-utorrent.html",
        "invision",
        14,
        ["rockett", "Beasly", "rockett", "schnurlos"],
        None,
        (4, "You're not seeing the surveymonkey link?", "The HTTPS link doesn't show using Firefox"),
        (-1, ""),
        likes=[None] * 14,  # the forum shows no reactions: no count rather than zero
    ),
    SavedPage(
        "discourse-2013-topic.json",
        "discourse",
        3,  # of the four in its post stream: the fourth is a moderator's note ("This topic is now pinned")
        ["samsaffron", "stienman", "splattne"],
        None,
        (-1, "", ""),
        (-1, ""),
        likes=[0, 5, 5],  # from `actions_summary`: the API of 2013 gives no `like_count`
        url="http://127.0.0.1/t/this-site-is-a-sandbox-it-is-reset-every-day/57.json",
    ),
    SavedPage(
        "discourse-topic.json",
        "discourse",
        20,
        ["ActiveMind", "Jarrod", "Elliot", "Elliot"],
        None,  # the topic's last 20 posts: 446 in all, ?page=23 would start at the 441st
        (0, "its odd though, over time I’ve noticed two reactions", "I just recently got told by a friend"),
        (-1, ""),
        likes=[1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        url="http://127.0.0.1/t/comments-on-the-boyfriends-introduction-to-feminism/2108.json?page=23",
    ),
]


@pytest.fixture(scope="module")
def served_fixtures():
    with serve_forum(FIXTURES) as (base_url, _):
        yield base_url


@pytest.mark.parametrize(
    ("file", "engine"), [(saved.file, saved.engine) for saved in PAGES] + [("smf-2.0-board.html", "smf")]
)
def test_auto_names_the_engine_of_a_real_page(file, engine, served_fixtures):
    url = f"{served_fixtures}/{file}"
    config = ScrapeConfig(url=url, requests_per_second=0)

    async def decide() -> str:
        fetcher = Fetcher(config, url)
        try:
            name, pages = await choose_profile(fetcher, config, url)
        finally:
            await fetcher.aclose()
        assert url in pages, "the page that decided is handed to the crawl"
        return name

    assert asyncio.run(decide()) == engine


@pytest.mark.parametrize("saved", PAGES, ids=lambda saved: saved.file)
def test_each_post_of_a_real_page_is_read_with_quotes_and_signatures_apart(saved):
    text = decode_page(
        (FIXTURES / saved.file).read_bytes()
    )  # as the crawler decodes it: by the page's charset
    page = builtin_profiles()[saved.engine].parse_thread_page(text, saved.url)
    assert len(page.posts) == saved.posts
    assert [post.author for post in page.posts[:4]] == saved.authors
    assert all(post.posted_at for post in page.posts), "every post has its date"
    assert (page.next_url or "").endswith(saved.next_page or "") and (page.next_url is None) == (
        saved.next_page is None
    )
    if saved.likes is not None:
        assert [post.likes for post in page.posts] == saved.likes
    index, quote_start, text_start = saved.quoting
    if index >= 0:
        quoting = page.posts[index]
        assert quoting.quotes[0].startswith(quote_start)
        assert quoting.text.startswith(text_start)
        assert quoting.quotes[0][:40] not in quoting.text, "the quote is kept apart from the post's own words"
    index, signature_start = saved.signed
    if index >= 0:
        signed = page.posts[index]
        assert signed.signature is not None and signed.signature.startswith(signature_start)
        assert signature_start not in signed.text


def test_a_real_smf_board_page_lists_every_topic_with_its_last_post():
    text = decode_page((FIXTURES / "smf-2.0-board.html").read_bytes())
    listing = builtin_profiles()["smf"].parse_thread_list(text, "http://127.0.0.1/board")
    assert len(listing.threads) == 50
    first = listing.threads[0]
    assert first.title == "105 Fegyverek, Vétek, Ékszerek, Öv rendszer!"
    assert first.url.startswith("http://metin2hungary.net/index.php/topic,182615.0.html")
    assert first.last_post_at == "2014-06-23T18:04:42+00:00"
    undated = [thread.title for thread in listing.threads if not thread.last_post_at]
    assert undated == ["[3ds max] run/walk animació probléma"], (
        "its last post says 'Tegnap' (Hungarian: yesterday)"
    )
    assert listing.next_url is not None and "board,5.50.html" in listing.next_url


def test_session_ids_in_links_are_not_part_of_a_page_address():
    smf = "http://metin2hungary.net/index.php/topic,66925.25.html?PHPSESSID=5d3921993f17409aecea3d369102b502"
    assert relative(smf) == "/index.php/topic,66925.25.html"
    phpbb = "http://x.org/viewtopic.php?f=1&t=9&sid=0123456789abcdef0123456789abcdef&start=25"
    assert relative(phpbb) == "/viewtopic.php?f=1&t=9&start=25"
    assert relative("http://x.org/showthread.php?s=short&t=5") == "/showthread.php?s=short&t=5", (
        "only real ids"
    )


def test_a_real_discourse_post_is_its_words_without_link_previews_or_image_captions():
    text = (FIXTURES / "discourse-topic.json").read_text(encoding="utf-8")
    url = "http://127.0.0.1/t/comments-on-the-boyfriends-introduction-to-feminism/2108.json?page=23"
    posts = builtin_profiles()["discourse"].parse_thread_page(text, url).posts
    previewed = posts[2]  # a TikTok link shown as a onebox, then one sentence
    assert previewed.text == "Look through some of the comments."
    assert "https://www.tiktok.com/@whytematthew/photo/7580810274135903510" in previewed.links
    captioned = posts[13]  # quotes a screenshot: Discourse writes "image 640×443 94.7 KB" under it
    assert captioned.quotes[0].startswith("There has been a lot of harmful rhetoric")
    assert not any("94.7 KB" in words for post in posts for words in [post.text, *post.quotes])
    assert [post.accepted for post in posts] == [False] * 20, "the solved plugin marks no answer here"
