"""The compute estimate `forumtune plan` prints before training: FLOPs per token, the work of an epoch over
the built dataset, and the time of an epoch and of the run on a named GPU (its peak × the path's measured
MFU, train/compute.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from forumtune.batching import padded_width
from forumtune.config import Config
from forumtune.layout import RunLayout
from forumtune.records import IGNORE_INDEX, TokenizedRow, read_rows
from forumtune.train import compute
from forumtune.train.batches import epoch_order
from forumtune.train.loading import GRAPH_PAD_MULTIPLE
from forumtune.train.loop import total_steps
from forumtune.train.plan import ModelShape, load_shape, precision


@dataclass(frozen=True)
class EpochWork:
    """What one epoch over the training rows computes. Token counts are per epoch; the rows of the last,
    incomplete micro-batch are left out, as the trainer leaves them out (train/batches.py)."""

    rows: int  # rows in train.jsonl
    micro_batches: int
    tokens: int  # real tokens of the rows trained on (no padding)
    trained_tokens: int  # tokens whose label counts in the loss (after the causal shift)
    processed_tokens: int  # positions run through the model: padding to each micro-batch's width included
    model_flops: float  # forward + backward (what MFU counts)
    hardware_flops: float  # with the recompute of checkpointed layers


def skips_down_proj(config: Config, model_type: str) -> bool:
    _, _, fast = precision(config)
    return fast and model_type in compute.ENDS_IN_DOWN_PROJ


def flops_at(config: Config, shape: ModelShape, model_type: str, seq_len: int) -> compute.StepFlops:
    return compute.step_flops(
        shape,
        seq_len,
        config.lora.r,
        checkpointing=config.train.gradient_checkpointing,
        skip_down_proj=skips_down_proj(config, model_type),
        trained_head="lm_head" in (config.lora.modules_to_save or []),
    )


def pad_multiple(config: Config) -> int:
    """The width micro-batches are padded to a multiple of: CUDA graphs' (train/loading.layer_graphs_for)."""
    _, _, fast = precision(config)
    graphs = fast and config.train.cuda_graphs and config.train.gradient_checkpointing
    return GRAPH_PAD_MULTIPLE if graphs and config.train.method == "sft" else 1


def epoch_work(config: Config, shape: ModelShape, model_type: str, rows: list[TokenizedRow]) -> EpochWork:
    """The first epoch's micro-batches in the trainer's order, each padded as the trainer pads it."""
    micro = config.train.micro_batch_size
    order = epoch_order(len(rows), config.seed, 0)
    starts = range(0, len(rows) - micro + 1 if len(rows) >= micro else 1, micro)
    tokens = trained = processed = 0
    model_flops = hardware_flops = 0.0
    for start in starts:
        batch = [rows[i] for i in order[start : start + micro]]
        width = padded_width(batch, pad_multiple(config))
        flops = flops_at(config, shape, model_type, width)
        tokens += sum(len(row["input_ids"]) for row in batch)
        trained += sum(sum(label != IGNORE_INDEX for label in row["labels"][1:]) for row in batch)
        processed += len(batch) * width
        model_flops += len(batch) * width * flops.model
        hardware_flops += len(batch) * width * flops.hardware
    return EpochWork(len(rows), len(starts), tokens, trained, processed, model_flops, hardware_flops)


@dataclass(frozen=True)
class RunEstimate:
    flops: compute.StepFlops  # per token at build.max_seq_len
    epoch: EpochWork | None  # None without a built dataset
    steps: int | None  # optimizer steps of the run (None: epochs of an unbuilt dataset)
    run_model_flops: float | None
    gpu: compute.Gpu | None
    mfu: float

    def seconds(self, model_flops: float | None) -> float | None:
        if model_flops is None or self.gpu is None:
            return None
        return model_flops / (self.gpu.bf16_tflops * 1e12 * self.mfu)


def estimate_run(config: Config, gpu: compute.Gpu | None, dataset: Path | None = None) -> RunEstimate:
    """The run's compute from the built dataset (`dataset`, default the run's dataset/train.jsonl) when it
    exists and the objective trains on it (SFT), else per step at build.max_seq_len."""
    shape, model_type = load_shape(config), model_type_of(config)
    flops = flops_at(config, shape, model_type, config.build.max_seq_len)
    path = dataset or RunLayout.of(config).dataset.train
    _, _, fast = precision(config)
    mfu = compute.FAST_PATH_MFU if fast else compute.PLAIN_PATH_MFU
    per_step = config.train.micro_batch_size * config.train.grad_accum_steps
    if config.train.method != "sft" or not path.is_file():
        steps = config.train.max_steps
        run = steps * per_step * config.build.max_seq_len * flops.model if steps else None
        return RunEstimate(flops, None, steps, run, gpu, mfu)
    rows = read_rows(path)
    epoch = epoch_work(config, shape, model_type, rows)
    steps = total_steps(config, len(rows))
    run = epoch.model_flops / max(1, epoch.micro_batches) * steps * config.train.grad_accum_steps
    return RunEstimate(flops, epoch, steps, run, gpu, mfu)


def model_type_of(config: Config) -> str:
    from transformers import AutoConfig

    from forumtune.base_model import resolve_base_model

    hf = AutoConfig.from_pretrained(resolve_base_model(config.model.base))
    return getattr(getattr(hf, "text_config", None) or hf, "model_type", "")


def format_flops(value: float) -> str:
    """'30.30 GFLOP': three significant-ish digits at the largest SI prefix that keeps the value ≥ 1."""
    for exponent, prefix in ((18, "E"), (15, "P"), (12, "T"), (9, "G"), (6, "M"), (3, "k")):
        if value >= 10**exponent:
            return f"{value / 10**exponent:,.2f} {prefix}FLOP"
    return f"{value:,.0f} FLOP"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# below this many tokens per micro-batch the step was host-bound in the measurements: the H100's 2×512 run
# took 37% longer than its FLOPs at the fast path's MFU (benchmarks/RESULTS.md, "Compute estimate")
HOST_BOUND_TOKENS = 2048


def micro_batch_tokens(estimate: RunEstimate, config: Config) -> float:
    epoch = estimate.epoch
    if epoch is None or not epoch.micro_batches:
        return config.train.micro_batch_size * config.build.max_seq_len
    return epoch.processed_tokens / epoch.micro_batches


def print_estimate(estimate: RunEstimate, config: Config, console: Console) -> None:
    flops, epoch = estimate.flops, estimate.epoch
    table = Table(title=f"compute estimate: {config.name} (LoRA r{config.lora.r})")
    table.add_column("")
    table.add_column("value", justify="right")
    seq = config.build.max_seq_len
    table.add_row(f"forward FLOPs per token ({seq}-token rows)", format_flops(flops.forward))
    table.add_row("backward (input gradients; LoRA weight gradients)", format_flops(flops.backward))
    table.add_row("recompute of checkpointed layers (not in MFU)", format_flops(flops.recompute))
    table.add_row("[bold]model FLOPs per token (forward + backward)", f"[bold]{format_flops(flops.model)}")
    if epoch is not None:
        table.add_row("training rows", f"{epoch.rows:,}", end_section=False)
        table.add_row("trained tokens per epoch (in the loss)", f"{epoch.trained_tokens:,}")
        table.add_row("tokens per epoch (real)", f"{epoch.tokens:,}")
        table.add_row("tokens processed per epoch (with padding)", f"{epoch.processed_tokens:,}")
        table.add_row("model FLOPs per epoch", format_flops(epoch.model_flops))
    if estimate.steps:
        table.add_row("optimizer steps in the run", f"{estimate.steps:,}")
    gpu = estimate.gpu
    path = "fast" if precision(config)[2] else "plain"
    if gpu is not None:
        table.add_row(
            f"{gpu.name}: {gpu.bf16_tflops:g} TFLOP/s bf16 × MFU {estimate.mfu:.1%} ({path} path)",
            f"{gpu.bf16_tflops * estimate.mfu * 1e12 / flops.model:,.0f} tokens/s",
        )
        if epoch is not None:
            table.add_row(
                "[bold]time per epoch", f"[bold]{format_duration(estimate.seconds(epoch.model_flops))}"
            )
        table.add_row(
            "[bold]time per run", f"[bold]{format_duration(estimate.seconds(estimate.run_model_flops))}"
        )
    console.print(table)
    if epoch is None:
        why = (
            "the objective trains on preference pairs" if config.train.method != "sft" else "no built dataset"
        )
        console.print(
            f"{why}: per-token figures at build.max_seq_len; `forumtune build` first for an epoch's work"
        )
    if gpu is None:
        console.print(f"for the time on a card: --gpu {'|'.join(compute.GPU_KEYS)}")
    elif micro_batch_tokens(estimate, config) < HOST_BOUND_TOKENS:
        console.print(
            f"[yellow]micro-batches of under {HOST_BOUND_TOKENS:,} tokens wait on the host more than the GPU: "
            "expect up to a third longer than this (benchmarks/RESULTS.md, 2×512)[/]"
        )
