"""The DPO throughput benchmark's data and arithmetic, checked without a GPU: both stacks train on the same
tokens, and a step's speed is read the same way for each."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import preference_throughput as pt


def test_trl_trains_on_the_same_tokens_as_forumtune(tmp_path):
    dataset = pt.write_pairs(tmp_path, vocab=512, prompt_len=16, seq=64, count=3)
    forumtune_rows = [
        json.loads(line) for line in (dataset / "preferences_train.jsonl").read_text().splitlines()
    ]
    trl_rows = pt.trl_pairs(dataset).to_list()
    assert len(trl_rows) == len(forumtune_rows) == 3
    for ours, theirs in zip(forumtune_rows, trl_rows, strict=True):
        assert len(ours["chosen_input_ids"]) == len(ours["rejected_input_ids"]) == 64
        assert theirs["prompt_ids"] + theirs["chosen_ids"] == ours["chosen_input_ids"]
        assert theirs["prompt_ids"] + theirs["rejected_ids"] == ours["rejected_input_ids"]
        assert len(theirs["prompt_ids"]) == 16 and theirs["chosen_ids"] != theirs["rejected_ids"]
        # forumtune trains on the answer tokens only, as TRL's completion mask does
        assert ours["chosen_labels"] == [-100] * 16 + theirs["chosen_ids"]


def test_speed_is_the_median_step_after_the_warm_up():
    steps = {
        "step_s": [9.0, 1.0, 2.0, 1.0, 4.0],
        "tokens": [2048] * 5,
        "losses": [0.6931, 0.69, 0.68, 0.67, 0.66],
    }
    summary = pt.summarise(steps, warmup=1)
    assert summary["timed_steps"] == 4
    assert summary["median_tokens_per_s"] == pytest.approx(2048 / 1.5)  # steps of 1, 1, 2 and 4 s
    assert summary["mean_tokens_per_s"] == pytest.approx(4 * 2048 / 8.0)
    assert summary["first_loss"] == pytest.approx(0.6931)
