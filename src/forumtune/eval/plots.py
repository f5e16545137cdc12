"""Loss curves as pictures: one run's train/eval loss, or several runs on the same axes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from forumtune.metrics_log import read_metrics


@dataclass
class RunCurves:
    """What one run contributes to a plot: its metrics.csv, and what the eval stage measured."""

    label: str
    metrics_csv: Path
    checkpoint_losses: list[dict[str, float]] = field(default_factory=list)
    base_eval_loss: float | None = None


def loss_points(metrics_csv: Path, split: str) -> list[tuple[int, float]]:
    return [
        (int(r["step"]), float(r["loss"]))
        for r in read_metrics(metrics_csv)
        if r["split"] == split and r["loss"]
    ]


def _plot_run(axes: plt.Axes, run: RunCurves, color: str | None, prefix: str) -> None:
    train, evaluation = loss_points(run.metrics_csv, "train"), loss_points(run.metrics_csv, "eval")
    if train:
        lines = axes.plot(
            *zip(*train), "-", color=color, alpha=0.6, linewidth=1.2, label=f"{prefix}train loss"
        )
        color = lines[0].get_color()
    if evaluation:
        lines = axes.plot(
            *zip(*evaluation),
            "o-",
            color=color,
            markersize=4,
            linewidth=2,
            label=f"{prefix}eval loss (during training)",
        )
        color = lines[0].get_color()
    if run.checkpoint_losses:
        steps = [c["step"] for c in run.checkpoint_losses]
        axes.plot(
            steps,
            [c["eval_loss"] for c in run.checkpoint_losses],
            "x",
            color=color,
            markersize=9,
            markeredgewidth=2,
            label=f"{prefix}checkpoint eval loss",
        )
    if run.base_eval_loss is not None:
        axes.axhline(
            run.base_eval_loss,
            color=color,
            linestyle="--",
            linewidth=1,
            label=f"{prefix}base model eval loss",
        )


def plot_loss_curves(runs: list[RunCurves], out_png: Path, title: str = "loss") -> Path:
    """Train and eval loss per optimizer step for each run, saved as a PNG."""
    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=110)
    for index, run in enumerate(runs):
        color = f"C{index}" if len(runs) > 1 else None
        _plot_run(axes, run, color, prefix=f"{run.label}: " if len(runs) > 1 else "")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss per trained token")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if axes.has_data():
        axes.legend(fontsize=8)
    else:
        axes.text(
            0.5, 0.5, "metrics.csv has no loss rows", ha="center", va="center", transform=axes.transAxes
        )
    figure.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png)
    plt.close(figure)
    return out_png
