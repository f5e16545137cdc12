"""Held-out preference accuracy: on dataset/preferences_eval.jsonl, how often each model ranks the answer
the community preferred above the other one.

- log-prob accuracy (base and tuned): the chosen answer's summed log-probability is the higher one;
- reward accuracy (tuned): the implicit reward r = beta × (log p_tuned − log p_reference) of DPO is higher
  for the chosen answer. The reference is the one training used: the starting adapter
  (train.init_adapter) for DPO and KTO that started from one, else the base;
- reward margin: the mean of r(chosen) − r(rejected), and the mean rewards of each side;
- per-token accuracy: the chosen answer's mean log-prob per answer token is the higher one (a sum favours
  the shorter answer, and the community's preferred reply is often the longer one);
- with train.then, the first training's model too (`first`: its adapter's name), its reward against the base.

Every log-prob goes through forumtune.preference_batches, the same code the DPO loss uses.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel

from forumtune import cpu_layout
from forumtune.config import Config
from forumtune.models import adapter_active
from forumtune.preference_batches import (
    REFERENCE_ADAPTER,
    REFERENCE_METHODS,
    collate_pairs,
    reference_weights,
    sequence_log_probs,
)
from forumtune.records import IGNORE_INDEX, PreferenceRow


@torch.no_grad()
def pair_log_probs(
    model: torch.nn.Module, rows: list[PreferenceRow], batch_size: int, pad_id: int, device: torch.device
) -> tuple[list[float], list[float]]:
    """The summed answer log-probs of every pair's chosen and rejected answer, with the model as it is."""
    chosen: list[float] = []
    rejected: list[float] = []
    for start in range(0, len(rows), batch_size):
        part = rows[start : start + batch_size]
        sums, _ = sequence_log_probs(model, collate_pairs(part, pad_id, device))
        chosen += sums[: len(part)].tolist()
        rejected += sums[len(part) :].tolist()
    return chosen, rejected


def share_above(higher: list[float], lower: list[float]) -> float:
    return sum(a > b for a, b in zip(higher, lower)) / max(1, len(higher))


def reference_source(config: Config) -> Path | None:
    """The adapter training compared with, or None for the base."""
    if config.train.method in REFERENCE_METHODS and config.train.init_adapter is not None:
        return config.train.init_adapter
    return None


def answer_tokens(labels: list[int]) -> int:
    """The answer tokens a summed log-prob counts (labels after the causal shift), at least 1."""
    return max(1, sum(label != IGNORE_INDEX for label in labels[1:]))


def per_token_accuracy(logps: tuple[list[float], list[float]], rows: list[PreferenceRow]) -> float:
    """share_above of the mean log-prob per answer token."""
    chosen = [lp / answer_tokens(r["chosen_labels"]) for lp, r in zip(logps[0], rows)]
    rejected = [lp / answer_tokens(r["rejected_labels"]) for lp, r in zip(logps[1], rows)]
    return share_above(chosen, rejected)


def first_training_metrics(
    model: PeftModel,
    rows: list[PreferenceRow],
    first: str,
    base: tuple[list[float], list[float]],
    beta: float,
    batch_size: int,
    pad_id: int,
    device: torch.device,
) -> dict[str, Any]:
    """The first training's model (train.then's starting point): its accuracies, its reward against the base."""
    with adapter_active(model, first):
        logps = pair_log_probs(model, rows, batch_size, pad_id, device)
    chosen = [beta * (t - b) for t, b in zip(logps[0], base[0])]
    rejected = [beta * (t - b) for t, b in zip(logps[1], base[1])]
    return {
        "first_logprob_accuracy": share_above(*logps),
        "first_per_token_accuracy": per_token_accuracy(logps, rows),
        "first_reward_accuracy": share_above(chosen, rejected),
        "first_reward_margin": statistics.fmean(c - r for c, r in zip(chosen, rejected)),
    }


def preference_metrics(
    model: PeftModel,
    rows: list[PreferenceRow],
    config: Config,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    *,
    first: str | None = None,
) -> dict[str, Any]:
    """`config` is the tuned model's (train.then's, for a run that trains twice: its reference is the first
    training's adapter); `first`, the name of the first training's adapter loaded beside it."""
    cpu_layout.use_trainable_layout(model)
    model.eval()
    with model.disable_adapter():
        base = pair_log_probs(model, rows, batch_size, pad_id, device)
    tuned = pair_log_probs(model, rows, batch_size, pad_id, device)
    source = reference_source(config)
    if source is None:
        reference = base
    else:
        model.load_adapter(str(source), adapter_name=REFERENCE_ADAPTER)
        try:
            with reference_weights(model):
                reference = pair_log_probs(model, rows, batch_size, pad_id, device)
        finally:
            model.delete_adapter(REFERENCE_ADAPTER)
    beta = config.train.beta
    chosen_rewards = [beta * (t - r) for t, r in zip(tuned[0], reference[0])]
    rejected_rewards = [beta * (t - r) for t, r in zip(tuned[1], reference[1])]
    return {
        "pairs": len(rows),
        "beta": beta,
        "reference": str(source) if source else "base",
        "base_logprob_accuracy": share_above(*base),
        "tuned_logprob_accuracy": share_above(*tuned),
        "base_per_token_accuracy": per_token_accuracy(base, rows),
        "tuned_per_token_accuracy": per_token_accuracy(tuned, rows),
        "tuned_reward_accuracy": share_above(chosen_rewards, rejected_rewards),
        "reward_margin": statistics.fmean(c - r for c, r in zip(chosen_rewards, rejected_rewards)),
        "chosen_reward": statistics.fmean(chosen_rewards),
        "rejected_reward": statistics.fmean(rejected_rewards),
        **(
            first_training_metrics(model, rows, first, base, beta, batch_size, pad_id, device)
            if first is not None
            else {}
        ),
    }
