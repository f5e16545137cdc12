"""The pipeline with a dataset of the user's own: no scrape, and an edited file rebuilds."""

from __future__ import annotations

import json
import os

from rich.console import Console

from forumtune.config import load_config
from forumtune.pipeline import run_pipeline
from tests.conftest import write_config


def write_messages(path, count: int, answer: str) -> None:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"How do I wax skis, question {n}?"},
                {"role": "assistant", "content": f"{answer} (answer number {n}, with some detail)"},
            ]
        }
        for n in range(count)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_an_input_file_skips_the_scrape_and_a_newer_file_rebuilds(tmp_path):
    data = tmp_path / "mine.jsonl"
    write_messages(data, 20, "Warm the wax and scrape it thin once it cools down")
    config = load_config(
        write_config(tmp_path, build={"input_file": str(data), "near_duplicate_threshold": None})
    )
    console = Console(quiet=True)

    assert run_pipeline(config, console, until="build") == ["build"]
    assert not (config.run_dir / "forum.sqlite").exists()
    assert run_pipeline(config, console, until="build") == []

    write_messages(data, 20, "Use a hot iron, then brush along the base to finish the job")
    future = data.stat().st_mtime + 5
    os.utime(data, (future, future))
    assert run_pipeline(config, console, until="build") == ["build"]
    train = (config.run_dir / "dataset" / "train.jsonl").read_text()
    assert "hot iron" in train and "Warm the wax" not in train
