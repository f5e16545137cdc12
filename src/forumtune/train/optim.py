"""Optimizers (bitsandbytes' paged/8-bit AdamW, or torch's AdamW) and learning-rate schedules."""

from __future__ import annotations

import bitsandbytes as bnb
import torch
from transformers import get_scheduler

from forumtune.config import TrainConfig

# Every schedule warms up linearly over train.warmup_steps first; "constant" then holds the peak.
SCHEDULES = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


def make_optimizer(model: torch.nn.Module, train: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    kwargs = {"lr": train.learning_rate, "weight_decay": train.weight_decay}
    if train.optimizer == "paged_adamw_8bit" and device.type == "cuda":
        return bnb.optim.PagedAdamW8bit(params, **kwargs)
    if train.optimizer == "paged_adamw_8bit":  # paging needs CUDA unified memory; same update without it
        return bnb.optim.AdamW8bit(params, **kwargs)
    if train.optimizer == "adamw_8bit":
        return bnb.optim.AdamW8bit(params, **kwargs)
    return torch.optim.AdamW(params, **kwargs)


def make_scheduler(optimizer: torch.optim.Optimizer, train: TrainConfig,
                   total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    return get_scheduler(SCHEDULES[train.lr_scheduler], optimizer,
                         num_warmup_steps=min(train.warmup_steps, total_steps), num_training_steps=total_steps)
