"""`--probe URL --suggest`: selectors found from a page's repeated structure, with no built-in profile,
must read the posts (and thread rows) of every engine's pages as that engine's own profile does."""

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from forumtune.cli import app
from forumtune.config import ScrapeConfig
from forumtune.scrape.encoding import decode_page
from forumtune.scrape.sites import builtin_profiles
from forumtune.scrape.sites.markup import MarkupProfile
from forumtune.scrape.suggest import suggest_selectors
from tests.conftest import DEMO_FORUM
from tests.scrape.conftest import engine_markup, stored_posts
from tests.scrape.forums.content import WAXING, Forum, file_for, write_forum
from tests.scrape.forums.server import serve_forum

FIXTURES = Path(__file__).parent / "fixtures"
REAL_THREAD_PAGES = {
    "vbulletin-3.8": "vbulletin",
    "vbulletin-4.2": "vbulletin",
    "vbulletin-5.5": "vbulletin",
    "xenforo-1": "xenforo",
    "xenforo-2": "xenforo",
    "phpbb-3.0": "phpbb",
    "smf-2.0-topic": "smf",
    "invision-4-neowin": "invision",
    "invision-4-utorrent": "invision",
}
HTML_ENGINES = ["phpbb", "vbulletin", "xenforo", "smf", "mybb", "invision"]
DEMO_THREAD = DEMO_FORUM / "threads" / "1001-best-all-mountain-ski-for-the-east-coast" / "index.html"


def words(text: str) -> str:
    return " ".join(text.split())


def fixture_forum_page(engine: str, tmp_path: Path, *, listing: bool) -> str:
    markup = engine_markup(engine)
    write_forum(markup, Forum(), tmp_path)
    path = markup.list_path(1) if listing else markup.thread_path(WAXING, 1)
    return decode_page(file_for(tmp_path, path).read_bytes())


def thread_pages(tmp_path_factory) -> list[tuple[str, str, str]]:
    pages = [
        (name, engine, decode_page((FIXTURES / f"{name}.html").read_bytes()))
        for name, engine in REAL_THREAD_PAGES.items()
    ]
    pages += [
        (
            f"{engine} fixture forum",
            engine,
            fixture_forum_page(engine, tmp_path_factory.mktemp(engine), listing=False),
        )
        for engine in HTML_ENGINES
    ]
    return [*pages, ("demo forum", "demo", DEMO_THREAD.read_text(encoding="utf-8"))]


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    return thread_pages(tmp_path_factory)


@pytest.mark.parametrize("index", range(len(REAL_THREAD_PAGES) + len(HTML_ENGINES) + 1))
def test_suggested_selectors_read_nine_posts_in_ten_as_the_engines_own_profile(index, pages):
    name, engine, html = pages[index]
    expected = builtin_profiles()[engine].parse_thread_page(html, "http://127.0.0.1/thread").posts
    suggestion = suggest_selectors(html)
    assert suggestion is not None and suggestion.page_kind == "thread page", name
    posts = (
        MarkupProfile("generic", suggestion.selectors)
        .parse_thread_page(html, "http://127.0.0.1/thread")
        .posts
    )
    assert len(posts) == len(expected), name
    same_words = sum(words(got.text) == words(want.text) for got, want in zip(posts, expected))
    assert same_words >= 0.9 * len(expected), f"{name}: {same_words} of {len(expected)} posts read alike"
    assert [post.author for post in posts] == [post.author for post in expected], name
    assert sum(bool(post.posted_at) for post in posts) >= 0.9 * len(expected), name


@pytest.mark.parametrize("engine", HTML_ENGINES)
def test_suggested_selectors_read_the_rows_of_a_thread_list(engine, tmp_path):
    html = fixture_forum_page(engine, tmp_path, listing=True)
    check_thread_list(html, engine)


def test_suggested_selectors_read_a_real_smf_board_and_the_demo_list():
    check_thread_list(decode_page((FIXTURES / "smf-2.0-board.html").read_bytes()), "smf")
    check_thread_list((DEMO_FORUM / "forums" / "freeski" / "index.html").read_text(encoding="utf-8"), "demo")


def check_thread_list(html: str, engine: str) -> None:
    expected = builtin_profiles()[engine].parse_thread_list(html, "http://127.0.0.1/list")
    suggestion = suggest_selectors(html)
    assert suggestion is not None and suggestion.page_kind == "thread list"
    listing = MarkupProfile("generic", suggestion.selectors).parse_thread_list(html, "http://127.0.0.1/list")
    assert [ref.url for ref in listing.threads] == [ref.url for ref in expected.threads]
    assert [ref.last_post_at for ref in listing.threads] == [ref.last_post_at for ref in expected.threads]
    assert listing.next_url == expected.next_url


def test_probe_suggest_prints_a_selectors_block_the_config_accepts(tmp_path):
    config = tmp_path / "forum.yaml"
    config.write_text(
        yaml.safe_dump(
            {"name": "t", "scrape": {"url": "/", "serve_dir": str(FIXTURES), "requests_per_second": 0}}
        )
    )
    result = CliRunner().invoke(app, ["scrape", str(config), "--probe", "/vbulletin-3.8.html", "--suggest"])
    assert result.exit_code == 0, result.output
    block = result.output[result.output.index("scrape:") : result.output.index("what these selectors read")]
    scrape = ScrapeConfig(url="/", **yaml.safe_load(block)["scrape"])
    assert scrape.site == "generic" and scrape.selectors is not None
    assert scrape.selectors.post_body == 'div[id^="post_message_"]'
    assert "post by BBOvenGuy" in result.output, "and shows what the selectors read there"


@pytest.mark.parametrize("engine", HTML_ENGINES)
def test_two_commands_take_an_unknown_forum_to_a_working_config(engine, tmp_path):
    """As the README gives them: `scrape CONFIG --probe LIST --suggest`, the block pasted into the
    config, then `scrape CONFIG`, on a forum served over HTTP whose engine the crawl is not told."""
    markup = engine_markup(engine)
    write_forum(markup, Forum(), tmp_path / "forum")
    config = tmp_path / "forum.yaml"
    with serve_forum(tmp_path / "forum") as (base_url, _):
        url = base_url + markup.list_path(1)
        raw = {"name": "unknown", "scrape": {"url": url, "requests_per_second": 0}}
        config.write_text(yaml.safe_dump(raw))
        result = CliRunner().invoke(app, ["scrape", str(config), "--probe", url, "--suggest"])
        assert result.exit_code == 0, result.output
        block = result.output[
            result.output.index("scrape:") : result.output.index("what these selectors read")
        ]
        pasted = yaml.safe_load(block)["scrape"]
        assert pasted["site"] == "generic" and "TODO" not in str(pasted), "one page gave both halves"
        raw["scrape"].update(pasted)
        config.write_text(yaml.safe_dump(raw))

        result = CliRunner().invoke(app, ["scrape", str(config)])
        assert result.exit_code == 0, result.output
    stored = list(stored_posts(tmp_path / "runs" / "unknown" / "forum.sqlite").values())  # in list order
    forum = Forum().threads
    assert len(stored) == len(forum)
    # A post a moderator deleted leaves a stub on some engines' pages ("This post was deleted", with its
    # author or none): the engine's profile knows the mark, a suggestion from the page's structure cannot.
    gone = {None} | {post.author for thread in forum for post in thread.posts if post.deleted}
    assert [[post["author"] for post in posts if post["author"] not in gone] for posts in stored] == [
        [post.author for post in thread.posts if not post.deleted] for thread in forum
    ]


def test_a_thread_the_list_links_that_cannot_be_fetched_leaves_the_list_half(tmp_path):
    markup = engine_markup("phpbb")
    write_forum(markup, Forum(), tmp_path / "forum")
    list_page = file_for(tmp_path / "forum", markup.list_path(1))
    first = (
        builtin_profiles()["phpbb"].parse_thread_list(list_page.read_text(), "http://127.0.0.1/").threads[0]
    )
    file_for(tmp_path / "forum", first.url.removeprefix("http://127.0.0.1")).unlink()  # now a 404
    config = tmp_path / "forum.yaml"
    with serve_forum(tmp_path / "forum") as (base_url, _):
        config.write_text(yaml.safe_dump({"name": "t", "scrape": {"url": "/", "requests_per_second": 0}}))
        result = CliRunner().invoke(
            app, ["scrape", str(config), "--probe", base_url + markup.list_path(1), "--suggest"]
        )
    assert result.exit_code == 0, result.output
    block = yaml.safe_load(result.output[result.output.index("scrape:") : result.output.index("what these")])
    assert block["scrape"]["selectors"]["thread_row"] and block["scrape"]["selectors"]["post"] == "TODO"
    assert "run --probe on one with --suggest" in result.output, "it says how to get the other half"
