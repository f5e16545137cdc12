"""Optimizers (bitsandbytes' paged/8-bit AdamW, or torch's AdamW) and learning-rate schedules."""

from __future__ import annotations

import bitsandbytes as bnb
import torch
from transformers import get_scheduler

from forumtune.config import TrainConfig

# Every schedule warms up linearly over train.warmup_steps first; "constant" then holds the peak.
SCHEDULES = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


class _NoWaitStep:
    """bitsandbytes' 8-bit optimizers wait for the GPU after every parameter's update: 448 waits a step for
    LoRA on all projections of a 7B model, each leaving the GPU idle while the host queues the next. The
    updates, and the prefetches of paged state, run in order on the current stream, so whatever reads the
    parameters or the state afterwards (the next step, a checkpoint, the train loop's one read of the
    step's losses) comes after them without a wait here. Same update, same state dict."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if not self.initialized:
            self.check_overrides()
            self.to_gpu()
            self.initialized = True
        for group_index, group in enumerate(self.param_groups):
            for param_index, param in enumerate(group["params"]):
                if param.grad is None:
                    continue
                if not self.state[param]:
                    self.init_state(group, param, group_index, param_index)
                self.prefetch_state(param)
                self.update_step(group, param, group_index, param_index)
        return loss


class PagedAdamW8bit(_NoWaitStep, bnb.optim.PagedAdamW8bit):
    pass


class AdamW8bit(_NoWaitStep, bnb.optim.AdamW8bit):
    pass


def make_optimizer(model: torch.nn.Module, train: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    kwargs = {"lr": train.learning_rate, "weight_decay": train.weight_decay}
    if train.optimizer == "paged_adamw_8bit" and device.type == "cuda":
        return PagedAdamW8bit(params, **kwargs)
    if train.optimizer in ("paged_adamw_8bit", "adamw_8bit"):  # paging needs CUDA unified memory
        return AdamW8bit(params, **kwargs)
    return torch.optim.AdamW(params, **kwargs)


def make_scheduler(optimizer: torch.optim.Optimizer, train: TrainConfig,
                   total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    return get_scheduler(SCHEDULES[train.lr_scheduler], optimizer,
                         num_warmup_steps=min(train.warmup_steps, total_steps), num_training_steps=total_steps)
