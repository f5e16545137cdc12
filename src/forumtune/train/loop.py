"""The `train` stage: a QLoRA training loop you can read top to bottom."""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from transformers import get_scheduler

from forumtune.base_model import load_tokenizer
from forumtune.config import Config
from forumtune.data.build import read_jsonl
from forumtune.errors import TrainError
from forumtune.train.batches import collate, mean_token_loss, micro_batches, trained_token_count
from forumtune.train.checkpoints import TrainerState, checkpoint_dirs, load_checkpoint, save_checkpoint
from forumtune.train.loading import load_for_training, pick_device
from forumtune.train.metrics_log import MetricsLog
from forumtune.train.optim import make_optimizer
from forumtune.train.plan import oom_advice


def total_steps(config: Config, train_examples: int) -> int:
    if config.train.max_steps:
        return config.train.max_steps
    per_step = config.train.micro_batch_size * config.train.grad_accum_steps
    return max(1, math.ceil(config.train.epochs * train_examples / per_step))


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return 0.0


def run_train(config: Config, dataset_dir: Path, run_dir: Path, console: Console, *, resume: bool = False) -> dict[str, Any]:
    try:
        return _train(config, dataset_dir, run_dir, console, resume=resume)
    except torch.cuda.OutOfMemoryError:
        raise TrainError(oom_advice(config)) from None


def _train(config: Config, dataset_dir: Path, run_dir: Path, console: Console, *, resume: bool) -> dict[str, Any]:
    train_cfg = config.train
    train_records = read_jsonl(dataset_dir / "train.jsonl")
    eval_records = read_jsonl(dataset_dir / "eval.jsonl")
    if len(train_records) < train_cfg.micro_batch_size:
        raise TrainError(f"{len(train_records)} training examples is fewer than train.micro_batch_size="
                         f"{train_cfg.micro_batch_size}; lower it or build more data")
    device = pick_device(train_cfg.device)
    torch.manual_seed(config.seed)
    tokenizer = load_tokenizer(config.model.base, config.build.chat_template)
    model = load_for_training(config, device)
    model.train()
    optimizer = make_optimizer(model, train_cfg, device)
    steps = total_steps(config, len(train_records))
    scheduler = get_scheduler(train_cfg.lr_scheduler, optimizer, num_warmup_steps=min(train_cfg.warmup_steps, steps),
                              num_training_steps=steps)
    checkpoints_dir = run_dir / "checkpoints"
    state = TrainerState(step=0, micro_batches_consumed=0)
    existing = checkpoint_dirs(checkpoints_dir)
    if resume and existing:
        state = load_checkpoint(existing[-1], model, optimizer, scheduler)
        console.print(f"resuming from {existing[-1].name} (step {state.step} of {steps})")
    elif not resume:
        shutil.rmtree(checkpoints_dir, ignore_errors=True)
    log = MetricsLog(run_dir / "metrics.csv", resume_from_step=state.step)
    batches = micro_batches(len(train_records), train_cfg.micro_batch_size, config.seed,
                            start=state.micro_batches_consumed)
    pad_id = tokenizer.pad_token_id
    started = time.perf_counter()
    columns = (TextColumn("train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[info]}"), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("train", total=steps, completed=state.step, info="")
        while state.step < steps:
            step_started = time.perf_counter()
            batch_list = [collate([train_records[i] for i in next(batches)], pad_id, device)
                          for _ in range(train_cfg.grad_accum_steps)]
            state.micro_batches_consumed += train_cfg.grad_accum_steps
            step_tokens = sum(trained_token_count(b) for b in batch_list)
            step_loss = 0.0
            for batch in batch_list:
                loss = model(**batch, num_items_in_batch=max(step_tokens, 1)).loss
                if not torch.isfinite(loss):
                    raise TrainError(_nan_message(state.step + 1, batch, tokenizer))
                loss.backward()
                step_loss += float(loss.detach())
            grad_norm = float(torch.nn.utils.clip_grad_norm_(
                [p for p in model.parameters() if p.requires_grad], train_cfg.max_grad_norm))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            elapsed = time.perf_counter() - step_started
            input_tokens = sum(int(b["attention_mask"].sum()) for b in batch_list)
            lr = scheduler.get_last_lr()[0]
            log.write(step=state.step, split="train", loss=step_loss, lr=lr, grad_norm=grad_norm,
                      tokens=input_tokens, tokens_per_s=input_tokens / elapsed,
                      peak_memory_mib=peak_memory_mib(device), elapsed_s=time.perf_counter() - started)
            progress.update(task, advance=1, info=f"loss {step_loss:.3f} lr {lr:.2e} {input_tokens / elapsed:,.0f} tok/s")
            if eval_records and (state.step % train_cfg.eval_every == 0 or state.step == steps):
                eval_loss = mean_token_loss(model, eval_records, train_cfg.micro_batch_size, pad_id, device)
                log.write(step=state.step, split="eval", loss=eval_loss, elapsed_s=time.perf_counter() - started)
                if state.best_eval_loss is None or eval_loss < state.best_eval_loss:
                    state.best_eval_loss, state.best_step = eval_loss, state.step
            if state.step % train_cfg.save_every == 0 and state.step < steps:
                save_checkpoint(checkpoints_dir, model, optimizer, scheduler, state, train_cfg.keep_checkpoints)
    _save_adapter(model, tokenizer, run_dir / "adapter")
    summary = {"steps": state.step, "best_eval_loss": state.best_eval_loss, "best_step": state.best_step,
               "seconds": time.perf_counter() - started, "peak_memory_mib": peak_memory_mib(device)}
    console.print(f"trained {state.step} steps in {summary['seconds']:.0f}s; eval loss {state.best_eval_loss}")
    return summary


def _save_adapter(model: torch.nn.Module, tokenizer: Any, adapter_dir: Path) -> None:
    staging = adapter_dir.with_name(adapter_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    shutil.rmtree(adapter_dir, ignore_errors=True)
    staging.rename(adapter_dir)


def _nan_message(step: int, batch: dict[str, torch.Tensor], tokenizer: Any) -> str:
    preview = tokenizer.decode(batch["input_ids"][0][:40], skip_special_tokens=True)
    return (f"loss became NaN/inf at step {step}; first example of the batch starts: {preview!r}. "
            "Lower train.learning_rate, keep model.compute_dtype=bfloat16, or check the data.")
