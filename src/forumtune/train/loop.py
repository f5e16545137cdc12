"""The `train` stage: a QLoRA training loop you can read top to bottom."""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from transformers import PreTrainedTokenizerBase, get_scheduler

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


@dataclass
class TrainingRun:
    config: Config
    run_dir: Path
    device: torch.device
    tokenizer: PreTrainedTokenizerBase
    model: PeftModel
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_records: list[dict[str, Any]]
    eval_records: list[dict[str, Any]]
    total_steps: int
    state: TrainerState
    log: MetricsLog


@dataclass(frozen=True)
class StepResult:
    loss: float
    grad_norm: float
    input_tokens: int
    seconds: float


def total_steps(config: Config, train_examples: int) -> int:
    if config.train.max_steps:
        return config.train.max_steps
    per_step = config.train.micro_batch_size * config.train.grad_accum_steps
    return max(1, math.ceil(config.train.epochs * train_examples / per_step))


def peak_memory_mib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0


def run_train(config: Config, dataset_dir: Path, run_dir: Path, console: Console, *,
              resume: bool = False) -> dict[str, Any]:
    try:
        run = setup(config, dataset_dir, run_dir, console, resume=resume)
        return train(run, console)
    except torch.cuda.OutOfMemoryError:
        raise TrainError(oom_advice(config)) from None


def setup(config: Config, dataset_dir: Path, run_dir: Path, console: Console, *, resume: bool) -> TrainingRun:
    train_records = read_jsonl(dataset_dir / "train.jsonl")
    if len(train_records) < config.train.micro_batch_size:
        raise TrainError(f"{len(train_records)} training examples is fewer than train.micro_batch_size="
                         f"{config.train.micro_batch_size}; lower it or build more data")
    device = pick_device(config.train.device)
    torch.manual_seed(config.seed)
    model = load_for_training(config, device)
    model.train()
    optimizer = make_optimizer(model, config.train, device)
    steps = total_steps(config, len(train_records))
    scheduler = get_scheduler(config.train.lr_scheduler, optimizer,
                              num_warmup_steps=min(config.train.warmup_steps, steps), num_training_steps=steps)
    state = TrainerState(step=0, micro_batches_consumed=0)
    checkpoints = checkpoint_dirs(run_dir / "checkpoints")
    if resume and checkpoints:
        state = load_checkpoint(checkpoints[-1], model, optimizer, scheduler)
        console.print(f"resuming from {checkpoints[-1].name} (step {state.step} of {steps})")
    elif not resume:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return TrainingRun(config=config, run_dir=run_dir, device=device,
                       tokenizer=load_tokenizer(config.model.base, config.build.chat_template), model=model,
                       optimizer=optimizer, scheduler=scheduler, train_records=train_records,
                       eval_records=read_jsonl(dataset_dir / "eval.jsonl"), total_steps=steps, state=state,
                       log=MetricsLog(run_dir / "metrics.csv", resume_from_step=state.step))


def train_step(run: TrainingRun, batches: Iterator[list[int]]) -> StepResult:
    """One optimizer step over grad_accum_steps micro-batches; the loss is per trained token of the step."""
    started = time.perf_counter()
    accumulation = run.config.train.grad_accum_steps
    batch_list = [collate([run.train_records[i] for i in next(batches)], run.tokenizer.pad_token_id, run.device)
                  for _ in range(accumulation)]
    run.state.micro_batches_consumed += accumulation
    step_tokens = max(1, sum(trained_token_count(batch) for batch in batch_list))
    step_loss = 0.0
    for batch in batch_list:
        loss = run.model(**batch, num_items_in_batch=step_tokens).loss
        if not torch.isfinite(loss):
            raise TrainError(_nan_message(run.state.step + 1, batch, run.tokenizer))
        loss.backward()
        step_loss += float(loss.detach())
    trainable = [p for p in run.model.parameters() if p.requires_grad]
    grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, run.config.train.max_grad_norm))
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.state.step += 1
    input_tokens = sum(int(batch["attention_mask"].sum()) for batch in batch_list)
    return StepResult(step_loss, grad_norm, input_tokens, time.perf_counter() - started)


def evaluate(run: TrainingRun, elapsed: float) -> None:
    eval_loss = mean_token_loss(run.model, run.eval_records, run.config.train.micro_batch_size,
                                run.tokenizer.pad_token_id, run.device)
    run.log.write(step=run.state.step, split="eval", loss=eval_loss, elapsed_s=elapsed)
    if run.state.best_eval_loss is None or eval_loss < run.state.best_eval_loss:
        run.state.best_eval_loss, run.state.best_step = eval_loss, run.state.step


def train(run: TrainingRun, console: Console) -> dict[str, Any]:
    train_cfg, state = run.config.train, run.state
    batches = micro_batches(len(run.train_records), train_cfg.micro_batch_size, run.config.seed,
                            start=state.micro_batches_consumed)
    started = time.perf_counter()
    columns = (TextColumn("train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[info]}"), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("train", total=run.total_steps, completed=state.step, info="")
        while state.step < run.total_steps:
            step = train_step(run, batches)
            lr = run.scheduler.get_last_lr()[0]
            tokens_per_s = step.input_tokens / step.seconds
            run.log.write(step=state.step, split="train", loss=step.loss, lr=lr, grad_norm=step.grad_norm,
                          tokens=step.input_tokens, tokens_per_s=tokens_per_s,
                          peak_memory_mib=peak_memory_mib(run.device), elapsed_s=time.perf_counter() - started)
            progress.update(task, advance=1, info=f"loss {step.loss:.3f}  lr {lr:.2e}  {tokens_per_s:,.0f} tok/s")
            if run.eval_records and (state.step % train_cfg.eval_every == 0 or state.step == run.total_steps):
                evaluate(run, time.perf_counter() - started)
            if state.step % train_cfg.save_every == 0 and state.step < run.total_steps:
                save_checkpoint(run.run_dir / "checkpoints", run.model, run.optimizer, run.scheduler, state,
                                train_cfg.keep_checkpoints)
    save_adapter(run.model, run.tokenizer, run.run_dir / "adapter")
    summary = {"steps": state.step, "best_eval_loss": state.best_eval_loss, "best_step": state.best_step,
               "seconds": round(time.perf_counter() - started, 2), "peak_memory_mib": peak_memory_mib(run.device)}
    console.print(f"trained {state.step} steps in {summary['seconds']:.0f}s; best eval loss "
                  f"{state.best_eval_loss} at step {state.best_step}")
    return summary


def save_adapter(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, adapter_dir: Path) -> None:
    """A PEFT adapter dir with the tokenizer and chat template the run used, written atomically."""
    staging = adapter_dir.with_name(adapter_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    shutil.rmtree(adapter_dir, ignore_errors=True)
    staging.rename(adapter_dir)


def _nan_message(step: int, batch: dict[str, torch.Tensor], tokenizer: PreTrainedTokenizerBase) -> str:
    preview = tokenizer.decode(batch["input_ids"][0][:40], skip_special_tokens=True)
    return (f"loss became NaN/inf at step {step}; first example of the batch starts: {preview!r}. "
            "Lower train.learning_rate, keep model.compute_dtype=bfloat16, or check the data.")
