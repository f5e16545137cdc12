"""Training checkpoints: adapter, optimizer, scheduler, RNG and progress, written atomically, last K kept."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from peft import PeftModel, set_peft_model_state_dict
from safetensors.torch import load_file

PREFIX = "step-"


@dataclass
class TrainerState:
    step: int
    micro_batches_consumed: int
    best_eval_loss: float | None = None
    best_step: int | None = None


def checkpoint_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / "state.json").exists()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def save_checkpoint(root: Path, model: PeftModel, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, state: TrainerState, keep: int) -> Path:
    target = root / f"{PREFIX}{state.step:06d}"
    staging = root / f".{target.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save_pretrained(staging / "adapter")
    torch.save(optimizer.state_dict(), staging / "optimizer.pt")
    torch.save(scheduler.state_dict(), staging / "scheduler.pt")
    torch.save({"torch": torch.get_rng_state()}, staging / "rng.pt")
    (staging / "state.json").write_text(json.dumps(asdict(state), indent=2))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    for old in checkpoint_dirs(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def load_checkpoint(path: Path, model: PeftModel, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler) -> TrainerState:
    adapter_weights = load_file(str(path / "adapter" / "adapter_model.safetensors"))
    set_peft_model_state_dict(model, adapter_weights)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    torch.set_rng_state(torch.load(path / "rng.pt", weights_only=True)["torch"])
    return TrainerState(**json.loads((path / "state.json").read_text()))
