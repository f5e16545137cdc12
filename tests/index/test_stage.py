"""The index stage in the pipeline: run when chat.retrieval needs it, skipped when done, and errors that
say what to do."""

from __future__ import annotations

import pytest
from rich.console import Console

from forumtune.chat.errors import ChatError
from forumtune.chat.stage import load_grounding
from forumtune.config import load_config
from forumtune.errors import RetrievalError
from forumtune.layout import RunLayout
from forumtune.pipeline import get_stage, run_pipeline, run_stage
from tests.conftest import write_config


def test_run_indexes_the_store_only_when_chat_retrieval_is_on(tmp_path):
    path = write_config(tmp_path, index={"embedding_model": None})
    layout = RunLayout.of(load_config(path))
    assert run_pipeline(load_config(path), Console(quiet=True), until="index") == ["scrape"]
    assert not layout.search_index.exists()
    retrieval_on = load_config(path, ["chat.retrieval=true"])
    assert run_pipeline(retrieval_on, Console(quiet=True), until="index") == ["index"]
    assert run_pipeline(retrieval_on, Console(quiet=True), until="index") == [], "an index up to date is kept"
    grounding = load_grounding(retrieval_on, layout.root)
    assert grounding is not None and grounding.retriever.search("DIN setting for my weight", 1)
    changed = load_config(path, ["chat.retrieval=true", "index.min_chars=60"])
    assert run_pipeline(changed, Console(quiet=True), until="index") == ["index"], "its settings changed"


def test_errors_name_what_is_missing_and_the_command_that_makes_it(tmp_path):
    config = load_config(write_config(tmp_path, index={"embedding_model": None}, chat={"retrieval": True}))
    with pytest.raises(RetrievalError, match="run `forumtune scrape` first"):
        run_stage(get_stage("index"), config, Console(quiet=True))
    with pytest.raises(ChatError, match="run `forumtune index` first"):
        load_grounding(config, config.run_dir)
    bad_model = load_config(write_config(tmp_path, index={"embedding_model": str(tmp_path / "nowhere")}))
    RunLayout.of(bad_model).forum_store.parent.mkdir(parents=True, exist_ok=True)
    RunLayout.of(bad_model).forum_store.touch()
    with pytest.raises(RetrievalError, match="index.embedding_model"):
        run_stage(get_stage("index"), bad_model, Console(quiet=True))
