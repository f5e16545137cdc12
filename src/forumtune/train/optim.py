"""Optimizers: bitsandbytes' paged/8-bit AdamW (optimizer state in 8 bits) or torch's AdamW."""

from __future__ import annotations

import bitsandbytes as bnb
import torch

from forumtune.config import TrainConfig


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
