"""What a run that does not fit the GPU is told to change: only changes that apply to its config, in the
order that costs the least speed."""

from __future__ import annotations

import pytest

from forumtune.config import load_config
from forumtune.train import oom_advice as advice_module
from forumtune.train.oom_advice import oom_advice
from tests.conftest import SMOKE_CONFIG


@pytest.fixture
def with_liger(monkeypatch):
    monkeypatch.setattr(advice_module, "liger_available", lambda: True)


def test_a_micro_batch_is_halved_with_the_accumulation_doubled(with_liger):
    config = load_config(SMOKE_CONFIG, ["train.micro_batch_size=4", "train.grad_accum_steps=2"])
    advice = oom_advice(config)
    assert advice.index("train.micro_batch_size=2 with train.grad_accum_steps=4") < advice.index(
        "build.max_seq_len="
    )


def test_a_micro_batch_of_one_is_not_halved(with_liger):
    config = load_config(SMOKE_CONFIG, ["train.micro_batch_size=1", "build.max_seq_len=16384"])
    advice = oom_advice(config)
    assert "train.micro_batch_size" not in advice
    assert "build.max_seq_len=8192" in advice


def test_long_rows_with_the_split_off_are_told_to_split(with_liger):
    long = ["build.max_seq_len=16384", "train.gradient_checkpointing=offload"]
    assert "train.split_attention=auto" in oom_advice(
        load_config(SMOKE_CONFIG, [*long, "train.split_attention=off"])
    )
    assert "split_attention" not in oom_advice(load_config(SMOKE_CONFIG, long))
    short = ["build.max_seq_len=4096", "train.split_attention=off"]
    assert "split_attention" not in oom_advice(load_config(SMOKE_CONFIG, short))


def test_the_fast_path_without_liger_is_told_to_install_it(monkeypatch):
    monkeypatch.setattr(advice_module, "liger_available", lambda: False)
    assert "pip install 'forumtune[gpu]'" in oom_advice(load_config(SMOKE_CONFIG, ["train.fast_path=true"]))
    assert "pip install" not in oom_advice(load_config(SMOKE_CONFIG, ["train.fast_path=false"]))
