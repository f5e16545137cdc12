"""`build.pairing: qa_retrieved`: questions carry passages from other threads, never from the answer's own
thread nor from the eval split, in the shape chat.retrieval gives them."""

from __future__ import annotations

from rich.console import Console

from forumtune.config import load_config
from forumtune.layout import RunLayout
from forumtune.pipeline import run_pipeline
from forumtune.records import read_jsonl
from forumtune.retrieval.context import CONTEXT_INTRO, QUESTION_LABEL
from tests.conftest import write_config


def context_of(row: dict) -> str:
    question = next(m["content"] for m in row["messages"] if m["role"] == "user")
    assert question.startswith(CONTEXT_INTRO), question[:80]
    return question.split(f"\n\n{QUESTION_LABEL} ", 1)[0]


def test_passages_come_from_other_train_threads_only(tmp_path):
    config = load_config(
        write_config(
            tmp_path, build={"pairing": "qa_retrieved", "eval_fraction": 0.2}, index={"embedding_model": None}
        )
    )
    assert run_pipeline(config, Console(quiet=True), until="build") == ["scrape", "index", "build"]
    dataset = RunLayout.of(config).dataset
    train, held_out = read_jsonl(dataset.train), read_jsonl(dataset.eval)
    assert train and held_out
    assert not {r["thread_id"] for r in train} & {r["thread_id"] for r in held_out}
    eval_titles = {r["title"] for r in held_out}
    for row in train + held_out:
        context = context_of(row)
        cited = [line.split("] ", 1)[1] for line in context.splitlines() if line.startswith("[")]
        assert cited, "every question found passages"
        assert not any(title.startswith(row["title"]) for title in cited), "never the answer's own thread"
        assert not any(title.startswith(eval_title) for title in cited for eval_title in eval_titles), (
            "never an eval thread"
        )
    # the index is an input of the build: a newer index rebuilds the dataset
    RunLayout.of(config).search_index.touch()
    assert run_pipeline(config, Console(quiet=True), until="build") == ["build"]
