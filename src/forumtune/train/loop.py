"""The `train` stage: a QLoRA training loop you can read top to bottom.

setup() loads data and model and restores a checkpoint; train_step() is one optimizer step over
grad_accum_steps micro-batches; train() runs the steps, logs them (step_log.py), evaluates
(best_adapter.py: measure_eval_loss keeps the best adapter and decides on early stopping) and checkpoints.
Under torchrun every process runs the same code on its own slice of each batch (see distributed.py).

train.method picks the objective (objectives.py): SFT on dataset/train.jsonl, or DPO, ORPO, KTO on the
preference pairs. The loop is the same for all; the objective collates a micro-batch, counts what its
loss is averaged over, and computes the loss (with the reference pass, for DPO and KTO).
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from forumtune.base_model import load_tokenizer
from forumtune.batching import input_token_count, to_device
from forumtune.config import Config
from forumtune.errors import TrainError
from forumtune.layout import DatasetFiles, RunLayout, checkpoint_dirs, checkpoint_step
from forumtune.models import pick_device
from forumtune.ranks import SINGLE_PROCESS, Ranks, ranks_from_environment
from forumtune.train import distributed, host_embeddings
from forumtune.train.allocator import use_expandable_segments
from forumtune.train.batches import micro_batches
from forumtune.train.best_adapter import measure_eval_loss, patience_ran_out, save_final_adapter
from forumtune.train.checkpoints import (
    TrainerState,
    load_adapter_weights,
    load_training_state,
    save_checkpoint,
)
from forumtune.train.interrupt import (
    StopNow,
    StopRequest,
    TrainingStopped,
    exit_status,
    stop_after_the_step,
    stop_message,
)
from forumtune.train.loading import (
    GRAPH_PAD_MULTIPLE,
    layer_graphs_for,
    load_for_training,
    settled_for_card,
    uses_fast_path,
)
from forumtune.train.non_finite import non_finite_message, stop_on_non_finite
from forumtune.train.objectives import Counts, objective_for, training_rows
from forumtune.train.oom_advice import oom_advice
from forumtune.train.optim import make_optimizer, make_scheduler
from forumtune.train.precision import training_autocast
from forumtune.train.preflight import check_before_loading
from forumtune.train.reporting import Reporter
from forumtune.train.resume import begin_checkpoints, choose_start, training_settings, write_record
from forumtune.train.step_log import elapsed_before, graphs_summary, log_step, peak_memory_mib
from forumtune.train.training_run import PreparedStep, StepResult, TrainingRun

CPU = torch.device("cpu")


def total_steps(config: Config, train_examples: int, world_size: int = 1) -> int:
    if config.train.max_steps:
        return config.train.max_steps
    per_step = config.train.micro_batch_size * config.train.grad_accum_steps * world_size
    return max(1, math.ceil(config.train.epochs * train_examples / per_step))


def run_train(
    config: Config, dataset_dir: Path, run_dir: Path, console: Console, *, restart: bool = False
) -> dict[str, Any]:
    """Train from the last checkpoint of these settings, or from step 0 (`restart`: always)."""
    ranks = ranks_from_environment()
    if not ranks.is_main:
        console = Console(quiet=True)
    layout = RunLayout.of(config, run_dir)
    run = None
    try:
        run = setup(config, dataset_dir, layout, console, restart=restart, ranks=ranks)
        with stop_after_the_step(enabled=not ranks.enabled) as stop:
            return train(run, console, stop)
    except (KeyboardInterrupt, StopNow, TrainingStopped) as stopped:
        if ranks.is_main:
            print(stop_message(layout, stopped), file=sys.stderr)
        raise SystemExit(exit_status(getattr(stopped, "signum", signal.SIGINT))) from None
    except torch.cuda.OutOfMemoryError:
        where = f" at step {run.state.step + 1}" if run is not None else " while loading the model"
        raise TrainError(oom_advice(config).replace("out of memory.", f"out of memory{where}.", 1)) from None
    finally:
        if run is not None:
            run.reporter.close()
        distributed.stop(ranks)


def setup(
    config: Config,
    dataset_dir: Path,
    layout: RunLayout,
    console: Console,
    *,
    restart: bool = False,
    ranks: Ranks = SINGLE_PROCESS,
) -> TrainingRun:
    device = pick_device(config.train.device, ranks.local_rank)
    objective = objective_for(
        config.train,
        fast_path=uses_fast_path(config, device),
        pack_to=config.build.max_seq_len if config.build.packing else None,
    )
    train_records, eval_records = training_rows(config.train, DatasetFiles(dataset_dir))
    if device.type == "cuda" and config.train.expandable_segments:
        console.print(f"[dim]{use_expandable_segments()}[/dim]")
    check_before_loading(config, train_records, device, ranks, console)
    distributed.start(ranks, device)
    settings = training_settings(config, dataset_dir, ranks.world_size)
    start = choose_start(layout, settings, restart=restart)
    checkpoint = start.checkpoint
    distributed.barrier(ranks)  # every rank has chosen before rank 0 moves an earlier training aside
    if ranks.is_main:
        begin_checkpoints(layout, start, settings, console)
    torch.manual_seed(config.seed)
    sharded = ranks.enabled and config.train.distributed == "fsdp"
    config = settled_for_card(config, device)  # train.split_attention and train.cuda_graphs: auto
    graphs = layer_graphs_for(config, device, distributed=ranks.enabled)
    for note in objective.fast_path_notes(uses_fast_path(config, device)):
        console.print(f"[dim]{note}[/dim]")
    peft_model = load_for_training(
        config, device, shardable=sharded, distributed=ranks.enabled, graphs=graphs
    )
    peft_model.train()
    if checkpoint is not None:
        load_adapter_weights(checkpoint, peft_model)
    model = distributed.wrap(
        peft_model, ranks, config.train.distributed, device, getattr(torch, config.model.compute_dtype)
    )
    optimizer = make_optimizer(model, config.train, device, one_process=not ranks.enabled)
    steps = total_steps(config, len(train_records), ranks.world_size)
    scheduler = make_scheduler(optimizer, config.train, steps)
    state = TrainerState(step=0, micro_batches_consumed=0)
    if checkpoint is not None:
        state = load_training_state(checkpoint, model, optimizer, scheduler, ranks)
        console.print(f"resuming from {checkpoint.name} (step {state.step} of {steps})")
    distributed.barrier(ranks)
    return TrainingRun(
        config=config,
        layout=layout,
        device=device,
        ranks=ranks,
        tokenizer=load_tokenizer(config.model.base, config.build.chat_template),
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        objective=objective,
        train_records=train_records,
        eval_records=eval_records,
        total_steps=steps,
        state=state,
        reporter=Reporter(config, layout, state.step, enabled=ranks.is_main),
        graphs=graphs,
        host_embedding=host_embeddings.installed(peft_model),
        settings=settings,
    )


def train_step(run: TrainingRun, batches: Iterator[list[int]]) -> StepResult:
    """One optimizer step over grad_accum_steps micro-batches; the loss is per trained token (SFT), pair (DPO,
    ORPO) or example (KTO) of the step, counted over every GPU, so N GPUs compute the same update as one
    GPU with the same global batch."""
    started = time.perf_counter()
    ranks, pad_id = run.ranks, run.tokenizer.pad_token_id
    prepared = run.prepared_step or prepare_step(run, batches)
    indices, host_batches, batch_list = prepared.indices, prepared.host_batches, prepared.device_batches
    run.prepared_step = None
    run.state.micro_batches_consumed += len(host_batches)
    counts = [run.objective.count(b) for b in host_batches]
    step_counts = Counts(
        items=distributed.sum_across(ranks, sum(c.items for c in counts), run.device),
        tokens=distributed.sum_across(ranks, sum(c.tokens for c in counts), run.device),
    )
    losses = []
    for number, batch in enumerate(batch_list):
        with distributed.gradient_sync(run.model, enabled=number == len(batch_list) - 1):
            with forward_precision(run):
                loss = run.objective.loss(run.model, batch, step_counts)
            # DDP and FSDP average gradients over GPUs; the loss is already a share of the global sum
            (loss * ranks.world_size).backward()
        losses.append(loss.detach().float())
    norm = clip_gradients(run)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=run.graphs is None)  # the graphs add into gradient buffers that stay
    if run.state.step + 1 < run.total_steps:
        run.prepared_step = prepare_step(run, batches)  # on its way to the GPU while this step finishes there
    # the step's one wait for the GPU, after everything is queued: a NaN is caught here, one update late
    # in memory but before anything of this step is saved, and the run stops
    *micro_losses, grad_norm = torch.stack([*losses, norm.float().to(losses[0].device)]).cpu().tolist()
    stop_on_non_finite(run, micro_losses, indices)
    step_loss = sum(micro_losses)
    if not math.isfinite(grad_norm):
        raise TrainError(non_finite_message(run, "the gradient norm", None, [i for c in indices for i in c]))
    run.scheduler.step()
    if run.graphs is not None:
        run.graphs.after_step()
    run.state.step += 1
    input_tokens = distributed.sum_across(
        ranks, sum(input_token_count(b, pad_id) for b in host_batches), run.device
    )
    return StepResult(
        distributed.sum_across(ranks, step_loss, run.device),
        grad_norm,
        int(input_tokens),
        time.perf_counter() - started,
    )


def prepare_step(run: TrainingRun, batches: Iterator[list[int]]) -> PreparedStep:
    """The next step's micro-batches: their record indices, collated on the host and sent to the device
    (through pinned memory, without waiting for the GPU), with their input embeddings gathered on the host
    when the table is there (train.embeddings_on_host). They count as consumed once the step runs, so a
    checkpoint written before that resumes with them."""
    indices = [next(batches) for _ in range(run.config.train.grad_accum_steps)]
    multiple = GRAPH_PAD_MULTIPLE if run.graphs is not None else 1
    host_batches = [
        run.objective.collate(
            [run.train_records[i] for i in chosen], run.tokenizer.pad_token_id, CPU, pad_to_multiple=multiple
        )
        for chosen in indices
    ]
    device_batches = [to_device(batch, run.device) for batch in host_batches]
    if run.host_embedding is not None:
        for host_batch, device_batch in zip(host_batches, device_batches, strict=True):
            run.host_embedding.stage(host_batch, device_batch)
    return PreparedStep(indices, host_batches, device_batches)


def forward_precision(run: TrainingRun) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast on the fast path (the fp32 LoRA weights meet 16-bit activations there)."""
    if not uses_fast_path(run.config, run.device):
        return contextlib.nullcontext()
    return training_autocast(run.device, getattr(torch, run.config.model.compute_dtype))


def clip_gradients(run: TrainingRun) -> torch.Tensor:
    """The gradient norm before clipping, as a tensor (reading it would wait for the GPU)."""
    trainable = [p for p in run.model.parameters() if p.requires_grad]
    norm = torch.nn.utils.clip_grad_norm_(trainable, run.config.train.max_grad_norm)
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # FSDP2 returns a DTensor


def train(run: TrainingRun, console: Console, stop: StopRequest | None = None) -> dict[str, Any]:
    """The steps left, with evals and checkpoints; `stop` set by a signal ends it after the current step
    with a checkpoint of that step (TrainingStopped)."""
    train_cfg, state = run.config.train, run.state
    batches = micro_batches(
        len(run.train_records),
        train_cfg.micro_batch_size,
        run.config.seed,
        start=state.micro_batches_consumed,
        rank=run.ranks.rank,
        world_size=run.ranks.world_size,
    )
    started = time.perf_counter() - elapsed_before(run)
    stopped_early = patience_ran_out(run)  # resumed from the checkpoint saved when it stopped early
    columns = (
        TextColumn("train"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("train", total=run.total_steps, completed=state.step, info="")
        while state.step < run.total_steps and not stopped_early:
            step = train_step(run, batches)
            info = log_step(run, step, time.perf_counter() - started)
            progress.update(task, advance=1, info=info)
            if not console.is_terminal and (state.step % train_cfg.eval_every == 0 or state.step == 1):
                console.print(f"step {state.step}/{run.total_steps}  {info}")
            if run.eval_records and (state.step % train_cfg.eval_every == 0 or state.step == run.total_steps):
                stopped_early = measure_eval_loss(run, time.perf_counter() - started)
            if (state.step % train_cfg.save_every == 0 or stopped_early) and state.step < run.total_steps:
                save_checkpoint(
                    run.layout.checkpoints,
                    run.model,
                    run.optimizer,
                    run.scheduler,
                    state,
                    train_cfg.keep_checkpoints,
                    run.ranks,
                )
            if stop is not None and stop.signum is not None:
                break
    if stop is not None and stop.signum is not None:
        raise TrainingStopped(stop.signum, state.step, checkpoint_now(run))
    if stopped_early:
        console.print(
            f"early stopping at step {state.step}: no eval-loss improvement in "
            f"{train_cfg.early_stopping_patience} evals"
        )
    final_step = save_final_adapter(run)
    if run.ranks.is_main:
        write_record(run.layout.checkpoints, run.settings, finished=True)
    summary = {
        "steps": state.step,
        "best_eval_loss": state.best_eval_loss,
        "best_step": state.best_step,
        "adapter_step": final_step,
        "stopped_early": stopped_early,
        "seconds": round(time.perf_counter() - started, 2),
        "peak_memory_mib": peak_memory_mib(run.device),
        "cuda_graphs": graphs_summary(run.graphs),
    }
    if run.graphs is not None and run.graphs.disabled:
        console.print(f"[yellow]CUDA graphs were switched off: {run.graphs.disabled}[/yellow]")
    console.print(
        f"trained {state.step} steps in {summary['seconds']:.0f}s; best eval loss "
        f"{state.best_eval_loss} at step {state.best_step}; adapter/ holds step {final_step}"
    )
    return summary


def checkpoint_now(run: TrainingRun) -> Path:
    """A checkpoint of the current step, unless the loop has just written it; after the last step too
    (resuming from that one only writes the final adapter)."""
    root = run.layout.checkpoints
    done = [path for path in checkpoint_dirs(root) if checkpoint_step(path) == run.state.step]
    if done:
        return done[0]
    return save_checkpoint(
        root, run.model, run.optimizer, run.scheduler, run.state, run.config.train.keep_checkpoints, run.ranks
    )
