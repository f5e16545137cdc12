"""A step whose loss or gradient norm is NaN/inf stops the run, naming the step, the micro-batch and the
dataset lines of its examples."""

from __future__ import annotations

import math

from forumtune.errors import TrainError
from forumtune.train import distributed
from forumtune.train.training_run import TrainingRun


def stop_on_non_finite(run: TrainingRun, micro_losses: list[float], indices: list[list[int]]) -> None:
    """Checked once per step (a check per micro-batch would stall the GPU queue each time); every GPU
    stops together (one that raised alone would leave the others waiting forever)."""
    bad = next((number for number, value in enumerate(micro_losses) if not math.isfinite(value)), None)
    if distributed.sum_across(run.ranks, float(bad is not None), run.device) == 0:
        return
    if bad is None:
        raise TrainError(
            f"loss became NaN/inf at step {run.state.step + 1} on another GPU; see rank 0's message"
        )
    raise TrainError(non_finite_message(run, "loss", bad, indices[bad]))


def non_finite_message(run: TrainingRun, what: str, micro_batch: int | None, indices: list[int]) -> str:
    lines = ", ".join(str(i + 1) for i in indices)
    where = (
        f", micro-batch {micro_batch + 1} of {run.config.train.grad_accum_steps}"
        if micro_batch is not None
        else ""
    )
    first = run.train_records[indices[0]]
    preview = run.tokenizer.decode(
        first.get("input_ids", first.get("chosen_input_ids", []))[:40], skip_special_tokens=True
    )
    return (
        f"{what} became NaN/inf at step {run.state.step + 1}{where}: examples on lines {lines} of "
        f"dataset/{run.objective.train_file}; the first starts {preview!r}. Lower train.learning_rate, use "
        "model.compute_dtype=bfloat16 (float16 overflows), or check those examples."
    )
