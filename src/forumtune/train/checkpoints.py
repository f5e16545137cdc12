"""Training checkpoints: adapter, optimizer, scheduler, RNG and progress, written atomically, last K kept.

A checkpoint is written beside `step-N` and renamed to it only when complete (forumtune.atomic), so a
run killed at any moment leaves either the whole checkpoint or none. Data order needs no file of its own:
batches.micro_batches replays the seeded order from `micro_batches_consumed`. The best adapter by eval
loss is kept apart in `best/`, outside the last-K rotation.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel, set_peft_model_state_dict
from safetensors.torch import load_file

from forumtune.atomic import atomic_directory
from forumtune.layout import BEST_CHECKPOINT, checkpoint_adapter, checkpoint_dir, checkpoint_dirs
from forumtune.ranks import SINGLE_PROCESS, Ranks
from forumtune.train import distributed


@dataclass
class TrainerState:
    step: int
    micro_batches_consumed: int
    best_eval_loss: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0


def rng_state() -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def save_adapter_weights(model: torch.nn.Module, target: Path | None) -> None:
    """Every rank calls this (FSDP gathers the shards); rank 0's call writes the PEFT adapter dir."""
    weights = distributed.trainable_state_dict(model) if distributed.is_sharded(model) else None
    if target is not None:
        # the trained adapter only: a DPO/KTO reference adapter is the frozen train.init_adapter
        distributed.unwrap(model).save_pretrained(target, state_dict=weights, selected_adapters=["default"])


def save_checkpoint(
    root: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: TrainerState,
    keep: int,
    ranks: Ranks = SINGLE_PROCESS,
) -> Path:
    """Called on every rank; rank 0 writes. RNG states of all ranks are kept, so each resumes its own."""
    target = checkpoint_dir(root, state.step)
    optimizer_state = distributed.optimizer_state(model, optimizer)
    rng_by_rank = distributed.gather_objects(ranks, rng_state())
    with atomic_directory(target, write=ranks.is_main) as staging:
        save_adapter_weights(model, checkpoint_adapter(staging) if staging else None)
        if staging is not None:
            torch.save(optimizer_state, staging / "optimizer.pt")
            torch.save(scheduler.state_dict(), staging / "scheduler.pt")
            torch.save({"ranks": rng_by_rank}, staging / "rng.pt")
            (staging / "state.json").write_text(json.dumps(asdict(state), indent=2))
    if ranks.is_main:
        for old in checkpoint_dirs(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    distributed.barrier(ranks)
    return target


def save_best(root: Path, model: torch.nn.Module, state: TrainerState, ranks: Ranks = SINGLE_PROCESS) -> None:
    """The adapter of the lowest eval loss so far, replaced atomically."""
    with atomic_directory(root / BEST_CHECKPOINT, write=ranks.is_main) as staging:
        save_adapter_weights(model, checkpoint_adapter(staging) if staging else None)
        if staging is not None:
            best = {"step": state.step, "eval_loss": state.best_eval_loss}
            (staging / "state.json").write_text(json.dumps(best))
    distributed.barrier(ranks)


def read_state(path: Path) -> TrainerState:
    return TrainerState(**json.loads((path / "state.json").read_text()))


def load_adapter_weights(path: Path, model: PeftModel) -> None:
    """Before the model is wrapped for DDP/FSDP: the checkpoint's adapter into the unwrapped model."""
    set_peft_model_state_dict(model, load_file(str(checkpoint_adapter(path) / "adapter_model.safetensors")))


def load_training_state(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    ranks: Ranks = SINGLE_PROCESS,
) -> TrainerState:
    distributed.load_optimizer_state(model, optimizer, torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    restore_rng(torch.load(path / "rng.pt", weights_only=True), ranks)
    return read_state(path)


def restore_rng(saved: dict[str, Any], ranks: Ranks) -> None:
    by_rank = saved["ranks"]
    mine = by_rank[ranks.rank] if ranks.rank < len(by_rank) else by_rank[0]
    torch.set_rng_state(mine["torch"])
    if "cuda" in mine and torch.cuda.is_available():
        torch.cuda.set_rng_state(mine["cuda"])
