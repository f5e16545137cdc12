"""Preference-accuracy figures of benchmarks/preferences.py from per-pair log-probs, with 95% intervals,
the choice of each method's setting on the validation pairs, and the printed tables.

Every model is scored from the summed answer log-probs of each pair's chosen and rejected answer (and the
answers' token counts). The sets are small (tens of pairs), so every accuracy carries a Wilson score
interval, and the comparison of a tuned model with the base a paired exact test (McNemar's, on the pairs
where exactly one of the two ranks right). A tie counts as half a right ranking: the base's implicit
reward against itself is 0 for both answers of every pair, so its reward accuracy is 50% by ties alone.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from bench_common import fmt, print_table

Z_95 = 1.959964


@dataclass(frozen=True)
class PairLogProbs:
    """One model's summed answer log-probs over a set of pairs, in the set's order."""

    chosen: list[float]
    rejected: list[float]

    def as_dict(self) -> dict[str, list[float]]:
        return {"chosen": self.chosen, "rejected": self.rejected}


def wilson_interval(successes: float, total: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a binomial share (`successes` may hold halves, from ties)."""
    if total == 0:
        return (0.0, 1.0)
    share = successes / total
    centre = (share + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))


def ranking(higher: list[float], lower: list[float]) -> dict[str, Any]:
    """How often `higher[i]` > `lower[i]`: the accuracy (a tie counts half), its 95% interval, the counts."""
    wins = sum(a > b for a, b in zip(higher, lower))
    ties = sum(a == b for a, b in zip(higher, lower))
    total = len(higher)
    low, high = wilson_interval(wins + ties / 2, total)
    return {
        "accuracy": (wins + ties / 2) / max(1, total),
        "ci95": [low, high],
        "right": wins,
        "ties": ties,
        "pairs": total,
    }


def mcnemar_p(first_right: list[bool], second_right: list[bool]) -> float:
    """Two-sided exact McNemar test: is one model right on more of the pairs where the two disagree than
    chance (a fair coin over the discordant pairs) would give?"""
    only_first = sum(a and not b for a, b in zip(first_right, second_right))
    only_second = sum(b and not a for a, b in zip(first_right, second_right))
    discordant = only_first + only_second
    if discordant == 0:
        return 1.0
    tail = sum(math.comb(discordant, k) for k in range(min(only_first, only_second) + 1)) / 2**discordant
    return min(1.0, 2 * tail)


def per_token(logps: PairLogProbs, tokens: PairLogProbs) -> PairLogProbs:
    """Mean log-prob per answer token: a sum favours the shorter answer, a mean does not."""
    return PairLogProbs(
        [lp / max(1.0, n) for lp, n in zip(logps.chosen, tokens.chosen)],
        [lp / max(1.0, n) for lp, n in zip(logps.rejected, tokens.rejected)],
    )


def log_ratios(policy: PairLogProbs, reference: PairLogProbs) -> PairLogProbs:
    """log p_policy − log p_reference per answer: DPO's implicit reward, before its factor beta."""
    return PairLogProbs(
        [p - r for p, r in zip(policy.chosen, reference.chosen)],
        [p - r for p, r in zip(policy.rejected, reference.rejected)],
    )


def mean_margin(scores: PairLogProbs) -> float:
    return statistics.fmean(c - r for c, r in zip(scores.chosen, scores.rejected)) if scores.chosen else 0.0


def right_per_pair(scores: PairLogProbs) -> list[bool]:
    return [c > r for c, r in zip(scores.chosen, scores.rejected)]


def model_figures(
    policy: PairLogProbs, base: PairLogProbs, sft: PairLogProbs, tokens: PairLogProbs
) -> dict[str, Any]:
    """Every figure of one model on one set of pairs. The reward margins are in log-prob units (the mean
    of [log-ratio(chosen) − log-ratio(rejected)]); DPO's reward margin is beta times that."""
    mean_policy, mean_base = per_token(policy, tokens), per_token(base, tokens)
    versus_base, versus_sft = log_ratios(policy, base), log_ratios(policy, sft)
    return {
        "per_token": ranking(mean_policy.chosen, mean_policy.rejected),
        "per_token_margin": mean_margin(mean_policy),
        "per_token_vs_base_p": mcnemar_p(right_per_pair(mean_policy), right_per_pair(mean_base)),
        "summed": ranking(policy.chosen, policy.rejected),
        "reward_vs_base": ranking(versus_base.chosen, versus_base.rejected),
        "margin_vs_base": mean_margin(versus_base),
        "reward_vs_sft": ranking(versus_sft.chosen, versus_sft.rejected),
        "margin_vs_sft": mean_margin(versus_sft),
    }


def percent(figure: dict[str, Any]) -> str:
    """'62.5% [47–76]': an accuracy and its 95% interval."""
    low, high = figure["ci95"]
    return f"{figure['accuracy']:.1%} [{low:.0%}–{high:.0%}]"


def all_figures(results, base_and_sft, counts) -> dict[str, dict[str, Any]]:
    """Per model (base, sft, every run's label), per set: model_figures."""
    figures: dict[str, dict[str, Any]] = {"base": {}, "sft": {}}
    for name, (base, sft) in base_and_sft.items():
        figures["base"][name] = model_figures(base, base, sft, counts[name])
        figures["sft"][name] = model_figures(sft, base, sft, counts[name])
        for result in results:
            policy = PairLogProbs(**result["log_probs"][name])
            figures.setdefault(result["label"], {})[name] = model_figures(policy, base, sft, counts[name])
    return figures


MARGIN_OF = {
    "reward_vs_base": "margin_vs_base",
    "per_token": "per_token_margin",
    "reward_vs_sft": "margin_vs_sft",
}


def choose(results, figures, select: str) -> dict[str, str]:
    """Per method, the label of the setting with the best validation figure (ties: the wider margin)."""
    chosen: dict[str, str] = {}
    for method in ("dpo", "orpo", "kto"):
        labels = [r["label"] for r in results if r["setting"]["method"] == method]
        if labels:
            validation = {label: figures[label]["validation"] for label in labels}
            chosen[method] = max(
                labels, key=lambda lb: (validation[lb][select]["accuracy"], validation[lb][MARGIN_OF[select]])
            )
    return chosen


def held_out_row(name: str, figure: dict[str, Any]) -> list[str]:
    return [
        name,
        percent(figure["per_token"]),
        fmt(figure["per_token_vs_base_p"], 3),
        percent(figure["summed"]),
        percent(figure["reward_vs_base"]),
        fmt(figure["margin_vs_base"], 2),
        percent(figure["reward_vs_sft"]),
        fmt(figure["margin_vs_sft"], 2),
    ]


def print_tables(results, figures, chosen, select: str) -> dict[str, str]:
    headers = [
        "model (held-out pairs)",
        "per-token acc [95%]",
        "p vs base",
        "summed acc",
        "reward acc vs base",
        "margin vs base",
        "reward acc vs SFT",
        "margin vs SFT",
    ]
    rows = [
        held_out_row("base", figures["base"]["held_out"]),
        held_out_row("SFT", figures["sft"]["held_out"]),
    ]
    rows += [held_out_row(f"{label} (chosen)", figures[label]["held_out"]) for label in chosen.values()]
    print(f"\nheld-out pairs; each method's setting chosen by validation {select}:")
    chosen_table = print_table(headers, rows)
    print(
        "reward acc: log p_model − log p_reference higher for the chosen answer; a model against itself scores "
        "0 on both answers, so the base's accuracy against the base and SFT's against SFT are 50% by ties. "
        "p vs base: exact McNemar test of the per-token accuracy against the base's, pair by pair."
    )
    listing = []
    for result in results:
        label, summary = result["label"], result["summary"]
        validation, held_out = figures[label]["validation"], figures[label]["held_out"]
        listing.append(
            [
                label + (" *" if label in chosen.values() else ""),
                percent(validation[select]),
                fmt(result["validation_loss"], 3),
                percent(held_out["per_token"]),
                percent(held_out["reward_vs_base"]),
                percent(held_out["reward_vs_sft"]),
                fmt(held_out["margin_vs_base"], 2),
                str(summary.get("steps")),
                fmt(result["train_seconds"], 1),
            ]
        )
    print("\nevery setting (* chosen):")
    every_table = print_table(
        [
            "setting",
            f"validation {select}",
            "validation loss",
            "held-out per-token",
            "held-out reward vs base",
            "held-out reward vs SFT",
            "margin vs base",
            "steps",
            "train s",
        ],
        listing,
    )
    return {"held_out_chosen": chosen_table, "every_setting": every_table}
