"""Community signals: likes / score / accepted read from pages, stored, and added to stores made before them."""

import sqlite3
from collections import defaultdict

import pytest
from selectolax.lexbor import LexborHTMLParser

from forumtune.config import ScrapeConfig
from forumtune.forum_store import ForumStore, ScrapedPost, ThreadRef
from forumtune.scrape.crawler import crawl
from forumtune.scrape.sites.signals import likes_of, score_of

# The schema of posts and threads before community signals (and before pages and list passes).
OLD_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE threads (id INTEGER PRIMARY KEY, url TEXT NOT NULL UNIQUE, external_id TEXT, title TEXT NOT NULL,
    starter TEXT, list_position INTEGER NOT NULL, pages_fetched INTEGER NOT NULL DEFAULT 0, next_page_url TEXT,
    done INTEGER NOT NULL DEFAULT 0);
CREATE TABLE posts (id INTEGER PRIMARY KEY, thread_id INTEGER NOT NULL REFERENCES threads(id),
    position INTEGER NOT NULL, external_id TEXT, author TEXT, posted_at TEXT, text TEXT NOT NULL, quotes TEXT NOT NULL,
    signature TEXT, links TEXT NOT NULL, UNIQUE (thread_id, position));
CREATE TABLE list_pages (url TEXT PRIMARY KEY, next_url TEXT);
CREATE TABLE thread_pages (thread_id INTEGER NOT NULL REFERENCES threads(id), number INTEGER NOT NULL,
    url TEXT NOT NULL, PRIMARY KEY (thread_id, number));
INSERT INTO threads (url, title, list_position, pages_fetched, done) VALUES ('/t/1', 'Old thread', 0, 1, 1);
INSERT INTO posts (thread_id, position, author, text, quotes, links) VALUES (1, 0, 'olga', 'Stored long ago.', '[]', '[]');
"""


def test_a_store_made_before_signals_gets_their_columns_and_keeps_its_posts(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
    with ForumStore(path) as store:
        columns = {row[1]: row[2] for row in store.db.execute("PRAGMA table_info(posts)")}
        assert {name: columns[name] for name in ("likes", "score", "accepted")} == {
            "likes": "INTEGER",
            "score": "INTEGER",
            "accepted": "INTEGER",
        }
        [(_, [old])] = list(store.iter_thread_posts())
        assert (old.author, old.text, old.likes, old.score, old.accepted) == (
            "olga",
            "Stored long ago.",
            None,
            None,
            None,
        )
        store.add_list_page("/list", [ThreadRef(url="/t/2", title="New thread")], None)
        new_thread = store.threads()[-1]
        store.add_thread_page(
            new_thread.id,
            None,
            [
                ScrapedPost(None, "pia", None, "Voted up.", likes=7, score=-2, accepted=True),
                ScrapedPost(None, "quinn", None, "No votes shown."),
            ],
            None,
            True,
        )
        posts = dict(store.iter_thread_posts())
    stored = [(p.likes, p.score, p.accepted) for p in posts[store_thread(posts, "New thread")]]
    assert stored == [(7, -2, True), (None, None, None)]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT likes, score, accepted FROM posts WHERE author = 'pia'").fetchone() == (
            7,
            -2,
            1,
        )


def store_thread(posts: dict, title: str):
    return next(thread for thread in posts if thread.title == title)


def element(html: str):
    return LexborHTMLParser(f"<div id='x'>{html}</div>").css_first("#x")


@pytest.mark.parametrize(
    ("html", "likes"),
    [
        ("12", 12),
        ("1,234 likes", 1234),
        ("1.2K", 1200),
        ("<bdi>alice</bdi>, <bdi>bob</bdi> and 3 others", 5),
        ("<bdi>alice</bdi> and <bdi>bob</bdi>", 2),
        ("The Following 30 users liked this post by carl:", 30),
        ("The Following User Says Thank You to <a href='member.php?u=3'>bob</a> For This Useful Post:", 1),
        ("", 0),
    ],
)
def test_like_counts_in_the_forms_forums_write_them(html, likes):
    assert likes_of(element(html)) == likes


def test_scores_keep_their_sign_and_a_missing_element_is_unknown():
    assert [score_of(element(text)) for text in ("+5", "-3", "\u22124 points", "12")] == [5, -3, -4, 12]
    assert likes_of(None) is None and score_of(None) is None


def test_demo_forum_likes_reward_good_answers_and_make_preference_pairs(forum_server, tmp_path):
    base_url, _ = forum_server
    url = f"{base_url}/forums/freeski/"
    crawl(
        ScrapeConfig(url=url, requests_per_second=0, concurrency=4),
        tmp_path / "f.sqlite",
        url,
        show_progress=False,
    )
    with ForumStore(tmp_path / "f.sqlite") as store:
        threads = list(store.iter_thread_posts())
    posts = [post for _, thread_posts in threads for post in thread_posts]
    assert len(posts) == 721 and all(post.likes is not None for post in posts), (
        "every demo post shows its likes"
    )
    assert all(post.score is None for post in posts), "the demo forum has no up/down votes"
    by_author = defaultdict(list)
    for post in posts:
        if post.position > 0:
            by_author[post.author].append(post.likes)
    mean = {author: sum(likes) / len(likes) for author, likes in by_author.items()}
    assert mean["bootfitter_dan"] > 2 * mean["gaper_greg"], "trusted advice draws more likes than bad advice"
    one_liners = [post.likes for post in posts if post.position > 0 and len(post.text.split()) < 5]
    assert one_liners and max(one_liners) <= 1
    for thread, thread_posts in threads:
        replies = {post.likes for post in thread_posts[1:]}
        assert len(replies) >= 2, f"{thread.title}: replies differ in likes, so a preference pair exists"
    accepted = [(thread, [p for p in thread_posts if p.accepted]) for thread, thread_posts in threads]
    marked = [found for _, found in accepted if found]
    assert 10 <= len(marked) < len(threads), "some threads, not all, have an accepted answer"
    assert all(len(found) == 1 and found[0].position > 0 for found in marked)
    assert sum(post.accepted is False for post in posts) == len(posts) - len(marked), (
        "the rest are marked not accepted"
    )
