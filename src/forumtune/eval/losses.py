"""Eval loss of the base model, the fine-tuned model and each saved checkpoint on the held-out split.

All of them go through the trainer's own `mean_token_loss` on the same records, so they see the same
tokens, the same prompt masking and the same per-token averaging as the eval loss logged in training.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from peft import PeftModel

from forumtune.batching import mean_token_loss
from forumtune.layout import checkpoint_adapter, checkpoint_dirs, checkpoint_step
from forumtune.records import DatasetRow

MAX_LOG_PERPLEXITY = 50.0  # exp(50) already says "meaningless"; beyond it exp() overflows to inf


def perplexity(loss: float) -> float:
    return math.exp(min(loss, MAX_LOG_PERPLEXITY))


def base_and_tuned_losses(
    model: PeftModel, records: list[DatasetRow], batch_size: int, pad_id: int, device: torch.device
) -> tuple[float, float]:
    with model.disable_adapter():
        base = mean_token_loss(model, records, batch_size, pad_id, device)
    tuned = mean_token_loss(model, records, batch_size, pad_id, device)
    return base, tuned


def checkpoint_losses(
    model: PeftModel,
    checkpoints_root: Path,
    records: list[DatasetRow],
    batch_size: int,
    pad_id: int,
    device: torch.device,
) -> list[dict[str, float]]:
    """Eval loss of every checkpoint's adapter, loaded beside the final one and removed again."""
    results = []
    active = model.active_adapter
    for path in checkpoint_dirs(checkpoints_root):
        step = checkpoint_step(path)
        name = f"checkpoint_{step}"
        model.load_adapter(str(checkpoint_adapter(path)), adapter_name=name)
        model.set_adapter(name)
        try:
            loss = mean_token_loss(model, records, batch_size, pad_id, device)
        finally:
            model.set_adapter(active)
            model.delete_adapter(name)
        results.append({"step": step, "eval_loss": loss, "perplexity": perplexity(loss)})
    return results


def trained_tokens(records: list[DatasetRow]) -> int:
    """Tokens that count in the loss (labels after the causal shift), as mean_token_loss counts them."""
    return sum(sum(label != -100 for label in record["labels"][1:]) for record in records)
