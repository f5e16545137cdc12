"""`build.pairing: qa_best_voted` and the build's vote stats, on a real SQLite store of voted threads."""

import pytest

from forumtune.errors import BuildError
from forumtune.forum_store import ForumStore, ScrapedPost, ThreadRef
from tests.data.conftest import write_store
from tests.data.test_build import build

QUESTION = "Which wax should I use for spring slush on my old skis?"
FIRST = "Any universal wax is fine in spring, just put plenty of it on the base."
LIKED = "Use a soft warm-temperature wax and structure the base; slush sucks on a dry base otherwise."
ACCEPTED = "A fluoro-free yellow wax and a rill tool for the structure worked best for me in slush."
SCORED = "Rub-on paste wax in the lift line every few runs keeps you gliding in wet snow."


def post(author: str, text: str, **votes) -> ScrapedPost:
    return ScrapedPost(external_id=None, author=author, posted_at=None, text=text, **votes)


def voted_store(path, threads: list[tuple[str, list[ScrapedPost]]]):
    with ForumStore(path) as store:
        store.add_list_page(
            "/list", [ThreadRef(url=f"/t/{n}", title=title) for n, (title, _) in enumerate(threads)], None
        )
        for stored, (title, posts) in zip(store.threads(), threads):
            store.add_thread_page(stored.id, title, posts, None, True)
    return path


THREADS = [
    (
        "Spring wax",
        [
            post("asker", QUESTION, likes=2),
            post("ann", FIRST, likes=1),
            post("ben", LIKED, likes=9),
            post("asker", "Thanks, the soft wax it is, that makes a lot of sense to me.", likes=0),
        ],
    ),
    (
        "Slush wax again",
        [
            post("asker2", QUESTION + " Asking again.", likes=0),
            post("cat", LIKED + " Really.", likes=12),
            post("dan", ACCEPTED, likes=3, accepted=True),
        ],
    ),
    (
        "Wax with votes",
        [
            post("asker3", QUESTION + " Third time.", score=1),
            post("eve", FIRST + " Trust me.", score=-2),
            post("fay", SCORED, score=4),
        ],
    ),
]


def test_best_voted_pairing_takes_the_accepted_else_the_most_voted_reply(tmp_path):
    store = voted_store(tmp_path / "voted.sqlite", THREADS)
    stats, records = build(tmp_path, store, pairing="qa_best_voted", min_answer_chars=20)
    answers = {record["title"]: record["messages"][-1]["content"] for record in records}
    assert answers == {"Spring wax": LIKED, "Slush wax again": ACCEPTED, "Wax with votes": SCORED}
    assert stats["votes"] == {
        "posts_with_likes": 7,
        "posts_with_score": 3,
        "accepted_posts": 1,
        "mean_likes": 3.86,
        "mean_score": 1.0,
        "answers_with_likes": 2,
        "mean_likes_of_answers": 6.0,
    }
    _, every_reply = build(tmp_path / "qa", store, pairing="qa", min_answer_chars=20)
    assert len(every_reply) == 5, "plain qa keeps every reply (the asker's thanks aside)"


def test_best_voted_pairing_on_a_store_without_votes_says_which_pairing_to_pick(tmp_path, forum_store):
    with pytest.raises(BuildError, match="build.pairing: qa"):
        build(tmp_path, forum_store, pairing="qa_best_voted")


def test_stats_of_a_store_without_votes_count_none(tmp_path):
    stats, _ = build(tmp_path, write_store(tmp_path / "plain.sqlite"))
    assert stats["votes"]["posts_with_likes"] == 0 and stats["votes"]["mean_likes_of_answers"] is None
