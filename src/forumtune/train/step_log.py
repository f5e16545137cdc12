"""What the loop logs: each step's row of metrics.csv (loss, learning rate, gradient norm, tokens/s, peak
memory) and its progress line, the seconds a resumed run had trained before, and the CUDA graphs' part of
train_summary.json."""

from __future__ import annotations

import resource
import sys
from typing import Any

import torch

from forumtune.metrics_log import read_metrics
from forumtune.train.layer_graphs import LayerGraphs
from forumtune.train.training_run import StepResult, TrainingRun


def log_step(run: TrainingRun, step: StepResult, elapsed: float) -> str:
    lr = run.scheduler.get_last_lr()[0]
    tokens_per_s = step.input_tokens / step.seconds
    run.reporter.write(
        step=run.state.step,
        split="train",
        loss=step.loss,
        lr=lr,
        grad_norm=step.grad_norm,
        tokens=step.input_tokens,
        tokens_per_s=tokens_per_s,
        peak_memory_mib=peak_memory_mib(run.device),
        elapsed_s=elapsed,
    )
    return f"loss {step.loss:.3f}  lr {lr:.2e}  {tokens_per_s:,.0f} tok/s"


def peak_memory_mib(device: torch.device) -> float:
    """Peak GPU memory PyTorch allocated on CUDA; on the CPU, the process's peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def elapsed_before(run: TrainingRun) -> float:
    """Seconds a resumed run had already trained, so elapsed_s keeps counting from the first start."""
    rows = read_metrics(run.layout.metrics_csv) if run.ranks.is_main else []
    return float(rows[-1]["elapsed_s"]) if rows and rows[-1]["elapsed_s"] else 0.0


def graphs_summary(graphs: LayerGraphs | None) -> dict[str, Any] | None:
    if graphs is None:
        return None
    return {"captured": graphs.captured, "shapes": len(graphs.statics), "disabled": graphs.disabled}
