"""Preference tuning in the training loop, a few real steps on the tiny 4-bit model: SFT, then DPO from
its adapter (the reference is that adapter), ORPO and KTO."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from rich.console import Console

from forumtune.config import load_config
from forumtune.errors import TrainError
from forumtune.layout import DatasetFiles
from forumtune.train.loop import run_train
from forumtune.train.objectives import objective_for, training_rows
from tests.conftest import write_config
from tests.train.conftest import write_dataset, write_preferences

CONSOLE = Console(quiet=True)


def train_losses(run_dir) -> list[float]:
    with (run_dir / "metrics.csv").open() as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle) if row["split"] == "train"]


@pytest.fixture(scope="module")
def sft_adapter(tmp_path_factory, tiny_tokenizer, tiny_mistral):
    """An SFT adapter with no dropout, so a preference run that starts from it starts exactly at it."""
    tmp = tmp_path_factory.mktemp("sft")
    config = load_config(
        write_config(
            tmp,
            model={"base": str(tiny_mistral)},
            lora={"dropout": 0.0},
            train={
                "max_steps": 4,
                "micro_batch_size": 4,
                "grad_accum_steps": 1,
                "learning_rate": 1e-2,
                "warmup_steps": 0,
                "eval_every": 4,
            },
        )
    )
    write_dataset(config.run_dir / "dataset", tiny_tokenizer)
    run_train(config, config.run_dir / "dataset", config.run_dir, CONSOLE)
    return config.run_dir / "adapter"


def preference_config(tmp_path, tiny_tokenizer, tiny_mistral, build=None, **train):
    settings = {
        "max_steps": 8,
        "micro_batch_size": 4,
        "grad_accum_steps": 2,
        "learning_rate": 5e-3,
        "warmup_steps": 0,
        "lr_scheduler": "constant",
        "eval_every": 8,
        **train,
    }
    config = load_config(
        write_config(
            tmp_path,
            model={"base": str(tiny_mistral)},
            lora={"dropout": 0.0},
            train=settings,
            build=build or {},
        )
    )
    write_preferences(config.run_dir / "dataset", tiny_tokenizer)
    return config


def test_dpo_from_an_sft_adapter_starts_at_log_two_and_learns_the_preference(
    tmp_path, tiny_tokenizer, tiny_mistral, sft_adapter
):
    config = preference_config(
        tmp_path, tiny_tokenizer, tiny_mistral, method="dpo", beta=0.5, init_adapter=str(sft_adapter)
    )
    summary = run_train(config, config.run_dir / "dataset", config.run_dir, CONSOLE)
    losses = train_losses(config.run_dir)
    # the reference is the SFT adapter the run starts from, so the first step's policy equals it
    assert losses[0] == pytest.approx(math.log(2), abs=1e-5)
    assert losses[-1] < 0.8 * math.log(2)
    assert summary["best_eval_loss"] < math.log(2)
    saved = config.run_dir / "adapter"
    assert json.loads((saved / "adapter_config.json").read_text())["r"] == 16
    assert not (saved / "reference").exists()  # only the trained adapter is saved


def test_dpo_without_init_adapter_compares_with_the_base(tmp_path, tiny_tokenizer, tiny_mistral):
    config = preference_config(tmp_path, tiny_tokenizer, tiny_mistral, method="dpo", max_steps=4)
    run_train(config, config.run_dir / "dataset", config.run_dir, CONSOLE)
    losses = train_losses(config.run_dir)
    assert losses[0] == pytest.approx(math.log(2), abs=1e-5)  # a new adapter's B is 0: policy = base
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("method", ["orpo", "kto"])
def test_orpo_and_kto_train_and_lower_their_loss(tmp_path, tiny_tokenizer, tiny_mistral, sft_adapter, method):
    config = preference_config(
        tmp_path, tiny_tokenizer, tiny_mistral, method=method, init_adapter=str(sft_adapter)
    )
    run_train(config, config.run_dir / "dataset", config.run_dir, CONSOLE)
    losses = train_losses(config.run_dir)
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-2:]) < sum(losses[:2])


@pytest.mark.parametrize("method", ["dpo", "kto"])
def test_packed_answers_train_as_padded_ones_do(tmp_path, tiny_tokenizer, tiny_mistral, method):
    """build.packing: the loop packs each micro-batch's answers into rows of build.max_seq_len tokens;
    the steps' losses are the padded run's."""
    losses = {}
    for packing in (False, True):
        config = preference_config(
            tmp_path / str(packing),
            tiny_tokenizer,
            tiny_mistral,
            build={"packing": packing},
            method=method,
            max_steps=3,
            eval_every=3,
        )
        run_train(config, config.run_dir / "dataset", config.run_dir, CONSOLE)
        losses[packing] = train_losses(config.run_dir)
    assert losses[True] == pytest.approx(losses[False], abs=1e-4)
    rows, _ = training_rows(config.train, DatasetFiles(config.run_dir / "dataset"))
    packed = objective_for(config.train, pack_to=config.build.max_seq_len)
    batch = packed.collate(rows[:4], 0, torch.device("cpu"))
    assert batch["input_ids"].shape[0] < batch["sequence_tokens"].shape[0]  # the answers did share rows


def test_a_preference_method_without_pairs_says_how_to_build_them(tmp_path, tiny_tokenizer, tiny_mistral):
    config = load_config(write_config(tmp_path, model={"base": str(tiny_mistral)}, train={"method": "dpo"}))
    write_dataset(config.run_dir / "dataset", tiny_tokenizer)
    with pytest.raises(TrainError, match="build.preferences=true"):
        run_train(config, config.run_dir / "dataset", config.run_dir, CONSOLE)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the fast path runs on a GPU")
def test_dpo_on_the_fast_path_follows_the_plain_path(tmp_path, tiny_tokenizer, tiny_mistral, sft_adapter):
    """The fused LoRA layers fall back to peft's when the adapter is off and run the reference adapter's
        weights when it is active; liger's forward returns the head's output when no labels are passed, which
    the chunked answer log-probs turn into the last hidden states (kernels/answer_log_probs.py). A wrong reference
        would show at step 1, whose loss must be log 2 (the policy starts at the reference)."""
    curves = {}
    for fast in (True, False):
        config = preference_config(
            tmp_path / str(fast),
            tiny_tokenizer,
            tiny_mistral,
            method="dpo",
            beta=0.5,
            init_adapter=str(sft_adapter),
            device="cuda",
            fast_path=fast,
            max_steps=6,
        )
        config.model.compute_dtype = "bfloat16"
        run_train(config, config.run_dir / "dataset", config.run_dir, CONSOLE)
        curves[fast] = train_losses(config.run_dir)
    for losses in curves.values():
        assert losses[0] == pytest.approx(math.log(2), abs=2e-3)
        assert losses[-1] < losses[0]
    assert curves[True] == pytest.approx(curves[False], rel=0.1, abs=0.02)
