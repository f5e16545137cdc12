import csv

import bitsandbytes as bnb
import pytest
import torch
from peft import PeftModel
from rich.console import Console

from forumtune.base_model import resolve_base_model
from forumtune.errors import TrainError
from forumtune.train.loading import load_for_training
from forumtune.train.loop import run_train, setup, train
from transformers import AutoModelForCausalLM

CONSOLE = Console(quiet=True)


def losses(run_dir, split="train"):
    with (run_dir / "metrics.csv").open() as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle) if row["split"] == split]


def test_base_is_4bit_nf4_with_lora_on_every_linear_layer(train_config):
    model = load_for_training(train_config, torch.device("cpu"))
    linear4 = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(linear4) == 4 * 7  # q k v o gate up down in each of 4 layers
    assert all(m.weight.quant_state.quant_type == "nf4" for m in linear4)
    assert all(m.weight.quant_state.nested for m in linear4)  # double quantization
    lora_targets = {name.split(".")[-1] for name, m in model.named_modules() if hasattr(m, "lora_A")}
    assert lora_targets == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_training_lowers_the_loss_and_saves_a_loadable_adapter(train_config):
    summary = run_train(train_config, train_config.run_dir / "dataset", train_config.run_dir, CONSOLE)
    train_losses = losses(train_config.run_dir)
    assert len(train_losses) == 12 and summary["steps"] == 12
    assert train_losses[-1] < 0.7 * train_losses[0]
    assert len(losses(train_config.run_dir, "eval")) == 2
    base = AutoModelForCausalLM.from_pretrained(resolve_base_model(train_config.model.base))
    model = PeftModel.from_pretrained(base, str(train_config.run_dir / "adapter"))
    assert any("lora_A" in name for name, _ in model.named_parameters())
    checkpoints = sorted(p.name for p in (train_config.run_dir / "checkpoints").iterdir())
    assert checkpoints == ["step-000004", "step-000008"]


def test_resume_continues_the_same_loss_curve(train_config, tmp_path):
    run_dir = train_config.run_dir
    run_train(train_config, run_dir / "dataset", run_dir, CONSOLE)
    uninterrupted = losses(run_dir)
    # Simulate a crash after step 8: drop what came after the last checkpoint, then resume.
    (run_dir / "adapter").rename(tmp_path / "old-adapter")
    run_train(train_config, run_dir / "dataset", run_dir, CONSOLE, resume=True)
    resumed = losses(run_dir)
    assert len(resumed) == 12
    assert resumed[:8] == uninterrupted[:8]
    assert resumed[8:] == pytest.approx(uninterrupted[8:], rel=1e-3)


def test_nan_in_a_batch_stops_training_with_the_step(train_config):
    run = setup(train_config, train_config.run_dir / "dataset", train_config.run_dir, CONSOLE, resume=False)
    calls = {"count": 0}

    def poison_third_micro_batch(module, inputs, output):
        calls["count"] += 1
        return output * float("nan") if calls["count"] == 3 else output

    run.model.get_input_embeddings().register_forward_hook(poison_third_micro_batch)
    with pytest.raises(TrainError, match=r"NaN/inf at step 2; first example of the batch starts"):
        train(run, CONSOLE)
    assert losses(train_config.run_dir) and len(losses(train_config.run_dir)) == 1
