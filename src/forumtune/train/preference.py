"""The preference losses, per pair (DPO, ORPO) or per example (KTO), from sequence log-probs.

Each returns one loss per pair or example; the loop sums them and divides by the pairs or examples of
the whole optimizer step (over every GPU), as SFT divides by the step's trained tokens.

- DPO (Rafailov et al. 2023): -log σ(β·((π_c − π_r) − (ref_c − ref_r))), with summed answer log-probs;
  label smoothing ε mixes in the flipped label (conservative DPO, as TRL's `sigmoid` loss did before its
  1.x releases; TRL 1.15's ignores label_smoothing).
- ORPO (Hong et al. 2024): NLL of the chosen answer − λ·log σ(log odds_c − log odds_r), where
  odds = p / (1 − p) of the answer's mean per-token log-prob; no reference model.
- KTO (Ethayarajh et al. 2024): 1 − σ(β·(r − z)) for a desirable answer and 1 − σ(β·(z − r)) for an
  undesirable one, r = π − ref of the answer, z the batch's KL estimate from mismatched prompt/answer
  pairs, clamped at 0 and not differentiated through (as in the paper and TRL).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dpo_losses(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    margin = (policy_chosen - policy_rejected) - (reference_chosen - reference_rejected)
    return (
        -F.logsigmoid(beta * margin) * (1 - label_smoothing) - F.logsigmoid(-beta * margin) * label_smoothing
    )


def odds_ratio_losses(mean_chosen: torch.Tensor, mean_rejected: torch.Tensor) -> torch.Tensor:
    """−log σ(log odds(chosen) − log odds(rejected)) of mean per-token log-probs (always < 0, so
    log(1 − p) = log1p(−exp(log p)) is finite)."""
    log_odds = (mean_chosen - mean_rejected) - (
        torch.log1p(-torch.exp(mean_chosen)) - torch.log1p(-torch.exp(mean_rejected))
    )
    return -F.logsigmoid(log_odds)


def kl_estimate(policy_mismatched: torch.Tensor, reference_mismatched: torch.Tensor) -> torch.Tensor:
    return (policy_mismatched - reference_mismatched).mean().clamp(min=0).detach()


def kto_losses(
    policy: torch.Tensor,
    reference: torch.Tensor,
    desirable: torch.Tensor,
    kl: torch.Tensor,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> torch.Tensor:
    ratio = policy - reference
    good = desirable_weight * (1 - torch.sigmoid(beta * (ratio - kl)))
    bad = undesirable_weight * (1 - torch.sigmoid(beta * (kl - ratio)))
    return torch.where(desirable, good, bad)
