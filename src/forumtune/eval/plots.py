"""Loss curves as pictures, from metrics.csv."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from forumtune.train.metrics_log import read_metrics  # noqa: E402


def plot_loss_curves(metrics_csv: Path, out_png: Path, title: str = "loss") -> Path:
    rows = read_metrics(metrics_csv)
    figure, axes = plt.subplots(figsize=(7, 4), dpi=110)
    for split, style in (("train", "-"), ("eval", "o-")):
        points = [(int(r["step"]), float(r["loss"])) for r in rows if r["split"] == split and r["loss"]]
        if points:
            steps, losses = zip(*points)
            axes.plot(steps, losses, style, label=f"{split} loss", markersize=4)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss per trained token")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png)
    plt.close(figure)
    return out_png
