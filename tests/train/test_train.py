import csv

import pytest
import torch
from peft import PeftModel
from rich.console import Console
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from forumtune.base_model import resolve_base_model
from forumtune.config import load_config
from forumtune.errors import ConfigError, TrainError
from forumtune.layout import RunLayout
from forumtune.train.batches import micro_batches
from forumtune.train.loop import run_train, setup, train
from forumtune.train.optim import make_scheduler
from tests.conftest import write_config
from tests.layouts import LAYOUTS, force_layout
from tests.train.conftest import write_dataset

CONSOLE = Console(quiet=True)


def losses(run_dir, split="train"):
    with (run_dir / "metrics.csv").open() as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle) if row["split"] == split]


def test_training_lowers_the_loss_logs_everywhere_and_saves_a_loadable_adapter(train_config):
    train_config.train.report_to = ["tensorboard", "wandb"]
    train_config.train.wandb_mode = "offline"
    run_dir = train_config.run_dir
    summary = run_train(train_config, run_dir / "dataset", run_dir, CONSOLE)
    train_losses = losses(run_dir)
    assert len(train_losses) == 12 and summary["steps"] == 12
    assert train_losses[-1] < 0.7 * train_losses[0]
    assert len(losses(run_dir, "eval")) == 2
    with (run_dir / "metrics.csv").open() as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "train"]
    assert all(float(row["tokens_per_s"]) > 0 and float(row["peak_memory_mib"]) > 50 for row in rows)
    base = AutoModelForCausalLM.from_pretrained(resolve_base_model(train_config.model.base))
    model = PeftModel.from_pretrained(base, str(run_dir / "adapter"))
    assert any("lora_A" in name for name, _ in model.named_parameters())
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert checkpoints == ["best", "settings.json", "step-000004", "step-000008"]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 13))
    assert events.Scalars("train/loss")[-1].value == pytest.approx(train_losses[-1], rel=1e-4)
    assert [e.step for e in events.Scalars("eval/loss")] == [6, 12]
    # W&B offline: the run's transaction log (what `wandb sync` uploads) holds every logged row
    offline_logs = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(offline_logs) == 1
    records = offline_logs[0].read_bytes()
    assert records.count(b"train/loss") >= 12 and records.count(b"eval/loss") >= 2


def test_training_is_the_same_whichever_4bit_layout_the_cpu_would_pick(
    tmp_path, tiny_tokenizer, tiny_mistral, monkeypatch
):
    """An eval every other step: on a CPU with AVX512-BF16 bitsandbytes would pack the base for it, and the
    steps after it would train on weights with no backward and rounded scales."""
    curves = {}
    for layout in LAYOUTS:
        force_layout(layout, monkeypatch)
        config = load_config(
            write_config(
                tmp_path / layout,
                model={"base": str(tiny_mistral)},
                train={
                    "max_steps": 6,
                    "micro_batch_size": 4,
                    "grad_accum_steps": 1,
                    "learning_rate": 1e-2,
                    "eval_every": 2,
                    "save_every": 3,
                },
            )
        )
        write_dataset(config.run_dir / "dataset", tiny_tokenizer)
        run_train(config, config.run_dir / "dataset", config.run_dir, CONSOLE)
        with (config.run_dir / "metrics.csv").open() as handle:
            curves[layout] = [
                (row["step"], row["split"], row["loss"], row["grad_norm"]) for row in csv.DictReader(handle)
            ]
    assert len(curves["packed"]) == 6 + 3
    assert curves["packed"] == curves["trainable"]


def test_nan_in_a_batch_stops_training_naming_step_micro_batch_and_examples(train_config):
    run = setup(train_config, train_config.run_dir / "dataset", RunLayout.of(train_config), CONSOLE)
    calls = {"count": 0}

    def poison_third_micro_batch(module, inputs, output):
        calls["count"] += 1
        return output * float("nan") if calls["count"] == 3 else output

    run.model.get_input_embeddings().register_forward_hook(poison_third_micro_batch)
    order = micro_batches(len(run.train_records), 4, train_config.seed)
    poisoned = [next(order) for _ in range(3)][2]
    lines = ", ".join(str(i + 1) for i in poisoned)
    with pytest.raises(
        TrainError,
        match=rf"loss became NaN/inf at step 2, micro-batch 1 of 2: "
        rf"examples on lines {lines} of dataset/train.jsonl",
    ):
        train(run, CONSOLE)
    assert len(losses(train_config.run_dir)) == 1


def test_early_stopping_keeps_the_best_adapter(train_config, cpu_layout):
    # A new best must beat the old one by 100 nats: after the first eval nothing does.
    train_config.train.eval_every = 2
    train_config.train.early_stopping_patience = 2
    train_config.train.early_stopping_min_delta = 100.0
    run_dir = train_config.run_dir
    summary = run_train(train_config, run_dir / "dataset", run_dir, CONSOLE)
    assert summary["stopped_early"] and summary["steps"] == 6 and summary["adapter_step"] == 2
    assert len(losses(run_dir)) == 6 and len(losses(run_dir, "eval")) == 3
    best = load_file(run_dir / "checkpoints" / "best" / "adapter" / "adapter_model.safetensors")
    final = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    assert best.keys() == final.keys() and all(torch.equal(best[k], final[k]) for k in best)
    last = load_file(run_dir / "checkpoints" / "step-000006" / "adapter" / "adapter_model.safetensors")
    assert any(not torch.equal(last[k], final[k]) for k in final)


@pytest.mark.parametrize(
    "kind, peak_step, end_factor", [("cosine", 3, 0.0), ("linear", 3, 0.0), ("constant", 3, 1.0)]
)
def test_every_schedule_warms_up_then_follows_its_shape(
    tiny_tokenizer, tmp_path, kind, peak_step, end_factor
):
    config = load_config(
        write_config(tmp_path, train={"lr_scheduler": kind, "warmup_steps": 3, "learning_rate": 1e-3})
    )
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = make_scheduler(optimizer, config.train, total_steps=10)
    rates = []
    for _ in range(10):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    rates.append(scheduler.get_last_lr()[0])
    assert rates[: peak_step + 1] == pytest.approx([0, 1e-3 / 3, 2e-3 / 3, 1e-3])
    assert rates[-1] == pytest.approx(1e-3 * end_factor)


def test_bad_configs_fail_before_the_model_is_loaded(tmp_path, tiny_tokenizer):
    # The base dir has a config but no weights: reaching from_pretrained would fail differently.
    from transformers import MistralConfig

    weightless, empty = tmp_path / "weightless", tmp_path / "empty"
    MistralConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    ).save_pretrained(weightless)
    tiny_tokenizer.save_pretrained(weightless)
    empty.mkdir()
    cases = [
        (
            TrainError,
            "train.init_adapter: .* holds no adapter_config.json",
            {"init_adapter": str(empty)},
            weightless,
        ),
        (TrainError, "fewer than train.micro_batch_size=64", {"micro_batch_size": 64}, weightless),
        (TrainError, "model.base .*cannot read its config.json", {}, empty),
        (ConfigError, "model.base .* is not a directory", {}, tmp_path / "missing"),
    ]
    for error, message, train_keys, base in cases:
        config = load_config(write_config(tmp_path, train=train_keys, model={"base": str(base)}))
        write_dataset(config.run_dir / "dataset", tiny_tokenizer, train_count=8, eval_count=2)
        with pytest.raises(error, match=message):
            run_train(config, config.run_dir / "dataset", config.run_dir, CONSOLE)
    for override, message in (
        ("model.load_in_8bit=true", "load_in_4bit and model.load_in_8bit are both true"),
        ("train.distributed=fsdp", "fsdp needs train.optimizer=adamw"),
        ("train.report_to=[comet]", "train.report_to.0: Input should be 'tensorboard'"),
        ("train.gradient_checkpointing=maybe", "train.gradient_checkpointing"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_config(write_config(tmp_path), [override])
