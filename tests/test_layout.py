"""The run directory's names, and directories that appear only once complete."""

from __future__ import annotations

import json

import pytest

from forumtune.atomic import atomic_directory, staging_path
from forumtune.config import load_config
from forumtune.layout import RunLayout, checkpoint_dirs, checkpoint_step
from tests.conftest import write_config


def test_every_stage_path_sits_in_the_run_dir_and_the_gguf_is_named_after_the_run(tmp_path):
    config = load_config(write_config(tmp_path, export={"gguf_type": "q8_0"}))
    paths = RunLayout.of(config)
    assert paths.gguf == config.run_dir / "export" / f"{config.name}-q8_0.gguf"
    assert paths.dataset.train == config.run_dir / "dataset" / "train.jsonl"
    assert paths.stamp("train") == config.run_dir / ".stages" / "train.json"
    with pytest.raises(ValueError, match="RunLayout.of"):
        _ = RunLayout(config.run_dir).gguf


def test_checkpoints_are_listed_by_step_and_half_written_ones_left_out(tmp_path):
    for name, complete in (
        ("step-000100", True),
        ("step-000020", True),
        ("step-000300", False),
        (".step-000400.partial", True),
        ("best", True),
    ):
        (tmp_path / name).mkdir()
        if complete:
            (tmp_path / name / "state.json").write_text("{}")
    assert [checkpoint_step(path) for path in checkpoint_dirs(tmp_path)] == [20, 100]


def test_a_failed_write_leaves_the_previous_directory_whole(tmp_path):
    target = tmp_path / "adapter"
    with atomic_directory(target) as staging:
        (staging / "weights").write_text("first")
    with pytest.raises(RuntimeError), atomic_directory(target) as staging:
        (staging / "weights").write_text("half of the second")
        raise RuntimeError("killed mid-write")
    assert (target / "weights").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
    with atomic_directory(target) as staging:
        (staging / "weights").write_text("second")
    assert (target / "weights").read_text() == "second"
    assert not staging_path(target).exists()


def test_a_rank_that_does_not_write_gets_no_directory(tmp_path):
    with atomic_directory(tmp_path / "adapter", write=False) as staging:
        assert staging is None
    assert list(tmp_path.iterdir()) == []


def test_a_shared_cache_keeps_the_first_finished_copy_and_nothing_of_a_failed_one(tmp_path):
    """first_wins: the built-in models, which two processes may build at once."""
    target = tmp_path / "models" / "thing"
    with pytest.raises(OSError, match="disk full"), atomic_directory(target, first_wins=True) as staging:
        (staging / "config.json").write_text("{}")
        raise OSError("disk full")
    assert not target.exists() and not list(target.parent.iterdir())
    with (
        atomic_directory(target, first_wins=True) as slower,
        atomic_directory(target, first_wins=True) as faster,
    ):
        (faster / "config.json").write_text('{"a": 1}')
        (slower / "config.json").write_text('{"a": 2}')  # its block ends after the faster one's: dropped
    assert json.loads((target / "config.json").read_text()) == {"a": 1}
    assert [p.name for p in target.parent.iterdir()] == ["thing"]
