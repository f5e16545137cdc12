"""`forumtune import`: Stack Exchange and Reddit dumps into the forum store, resumable, then built."""

import sqlite3
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from forumtune.cli import app
from forumtune.errors import ScrapeError
from forumtune.forum_store import ForumStore
from forumtune.scrape.dumps import reddit, run_import, stackexchange
from forumtune.scrape.dumps import writer as dump_writer
from forumtune.scrape.dumps.writer import ImportSummary, import_rows
from tests.data.test_build import build

DUMPS = Path(__file__).parent / "fixtures" / "dumps"
QUIET = Console(quiet=True)


def threads_of(store_path: Path) -> dict[str, list[tuple]]:
    with ForumStore(store_path) as store:
        return {
            thread.title: [(p.author, p.text, p.quotes, p.score, p.accepted) for p in posts]
            for thread, posts in store.iter_thread_posts()
        }


def test_stack_exchange_posts_give_threads_scores_and_the_accepted_answer(tmp_path):
    summary = run_import("stackexchange", [DUMPS / "Posts.xml"], tmp_path / "f.sqlite", QUIET)
    assert (summary.threads, summary.posts) == (2, 6)
    assert summary.skipped == {"not_a_question_or_answer": 1, "no_thread": 1}, (
        "a tag wiki and an orphan answer"
    )
    threads = threads_of(tmp_path / "f.sqlite")
    assert list(threads) == ["Which wax for very cold snow?", "Café open in summer?"]
    question, universal, green, bare = threads["Which wax for very cold snow?"]
    assert question == (
        "user7",
        "I just bought an iron. Which wax should I use when the snow is colder than minus ten?",
        [],
        12,
        None,
    )
    assert green == (
        "carol",
        "A hard green wax works below minus ten. See this guide.",
        ["colder than minus ten"],
        9,
        True,
    ), "the quote is kept apart, the accepted answer marked"
    assert [post[3:] for post in (universal, bare)] == [(4, False), (-2, False)]
    with ForumStore(tmp_path / "f.sqlite") as store:
        assert store.crawl_complete(), "the build may read it at once"


def test_stack_exchange_comments_join_the_thread_of_their_post_quoting_it(tmp_path):
    summary = run_import(
        "stackexchange", [DUMPS / "Posts.xml", DUMPS / "Comments.xml"], tmp_path / "f.sqlite", QUIET
    )
    assert summary.posts == 8 and summary.skipped["no_post"] == 1
    wax = threads_of(tmp_path / "f.sqlite")["Which wax for very cold snow?"]
    on_answer, on_question = wax[4:]
    assert on_answer[:2] == ("user12", "Green worked for me at minus fifteen too.")
    assert on_answer[2][0].startswith("A hard green wax works below minus ten."), "it quotes the answer"
    assert on_question[0] == "guest42" and on_question[2][0].startswith("I just bought an iron.")


def test_reddit_archives_give_threads_comments_replies_and_scores(tmp_path):
    files = [DUMPS / "RS_skiing.jsonl", DUMPS / "RC_skiing.jsonl"]
    summary = run_import("reddit", files, tmp_path / "f.sqlite", QUIET)
    assert (summary.threads, summary.posts) == (2, 5)
    assert summary.skipped == {"deleted": 1, "no_thread": 1}
    threads = threads_of(tmp_path / "f.sqlite")
    submission, answer, reply = threads["Which wax for very cold snow?"]
    assert (submission[0], submission[3]) == ("alice", 57)
    assert answer == ("bob", "A hard green wax works below minus ten.", [], 41, None)
    assert reply[1] == "Agreed, and scrape it thin before you ride."
    assert reply[2][0] == "A hard green wax works below minus ten.", "a reply quotes the comment it answers"
    webcam = threads["Best ski resort webcam?"]
    assert webcam[0][:2] == (None, ""), "a link post by a deleted account: the title is the question"


def test_a_killed_import_resumes_and_stores_each_row_once(tmp_path, monkeypatch):
    monkeypatch.setattr(dump_writer, "BATCH_ROWS", 3)
    path = DUMPS / "Posts.xml"

    def killed_after(rows, count):
        for number, row in enumerate(rows, start=1):
            if number > count:
                raise KeyboardInterrupt  # as a Ctrl-C or a kill between two rows
            yield row

    with ForumStore(tmp_path / "killed.sqlite") as store, pytest.raises(KeyboardInterrupt):
        import_rows(store, path, killed_after(stackexchange.read_posts_xml(path), 7), ImportSummary())
    with ForumStore(tmp_path / "killed.sqlite") as store:
        assert store.post_count() == 4, "the two whole batches before the kill are stored, the third is not"
    resumed = run_import("stackexchange", [path], tmp_path / "killed.sqlite", QUIET)
    assert resumed.resumed_after == 6
    run_import("stackexchange", [path], tmp_path / "once.sqlite", QUIET)
    assert threads_of(tmp_path / "killed.sqlite") == threads_of(tmp_path / "once.sqlite")


def test_an_imported_dump_builds_with_the_best_voted_answers(tmp_path):
    store = tmp_path / "f.sqlite"
    run_import("stackexchange", [DUMPS / "Posts.xml"], store, QUIET)
    stats, records = build(tmp_path, store, pairing="qa_best_voted", min_answer_chars=20)
    answers = [record["messages"][-1]["content"] for record in records]
    assert answers == [
        "A hard green wax works below minus ten. See this guide.",
        "Most are open on weekends from July to September.",
    ]
    assert stats["votes"]["posts_with_score"] == 6 and stats["votes"]["accepted_posts"] == 1


def test_the_import_command_and_its_errors(tmp_path):
    config = tmp_path / "forum.yaml"
    config.write_text(f"name: dump\nscrape: {{url: /}}\nruns_dir: {tmp_path / 'runs'}\n")
    result = CliRunner().invoke(
        app,
        [
            "import",
            str(config),
            "--format",
            "reddit",
            str(DUMPS / "RS_skiing.jsonl"),
            str(DUMPS / "RC_skiing.jsonl"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "imported 2 threads and 5 posts" in result.output
    db = sqlite3.connect(tmp_path / "runs" / "dump" / "forum.sqlite")
    assert db.execute("SELECT COUNT(*), SUM(score) FROM posts").fetchone() == (5, 57 + 41 + 12 + 3 + 5)
    with pytest.raises(ScrapeError, match="unknown; pick one of"):
        run_import("usenet", [DUMPS / "Posts.xml"], tmp_path / "x.sqlite", QUIET)
    with pytest.raises(ScrapeError, match="is not a file"):
        run_import("reddit", [tmp_path / "missing.jsonl"], tmp_path / "x.sqlite", QUIET)
    assert reddit.split_quotes("&gt; quoted\nown words") == ("own words", ["quoted"])
