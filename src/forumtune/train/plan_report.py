"""The memory plan as `forumtune plan` and the pre-training check print it: its parts in a table, and
whether the run fits the card."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from forumtune.config import Config
from forumtune.train.objectives import OBJECTIVES
from forumtune.train.oom_advice import oom_advice
from forumtune.train.plan import GIB, MemoryPlan


def format_gib(value: float) -> str:
    return f"{value / GIB:.2f} GiB"


def format_memory(value: float) -> str:
    """GiB, or MiB below a tenth of one, so that a small model's parts do not all read 0.00 GiB."""
    return format_gib(value) if value >= GIB / 10 else f"{value / 2**20:.1f} MiB"


def trains_on_cpu(config: Config) -> bool:
    import torch

    return config.train.device == "cpu" or (config.train.device == "auto" and not torch.cuda.is_available())


def cpu_note(config: Config) -> str:
    why = (
        "train.device is cpu" if config.train.device == "cpu" else "train.device=auto finds no CUDA GPU here"
    )
    return (
        f"{why}, so this config trains on the CPU, in system memory, which this plan does not estimate; "
        "the figures are for training it on a GPU"
    )


def print_plan(plan: MemoryPlan, config: Config, console: Console) -> None:
    """The plan's parts and whether the run fits the card; said to be for a GPU when training uses the CPU."""
    on_cpu = trains_on_cpu(config)
    per_row = OBJECTIVES[config.train.method].sequences_per_row
    rows = (
        f"{config.train.micro_batch_size} pairs × 2" if per_row == 2 else str(config.train.micro_batch_size)
    )
    table = Table(
        title=f"estimated peak GPU memory: {config.name} "
        f"(micro-batch {rows} × {config.build.max_seq_len} tokens)"
    )
    table.add_column("part")
    table.add_column("memory", justify="right")
    for name, value in plan.parts.items():
        table.add_row(name, format_memory(value))
    table.add_row("[bold]allocator's peak", f"[bold]{format_memory(plan.allocated)}", end_section=True)
    for name, value in plan.card_parts.items():
        table.add_row(name, format_memory(value))
    table.add_row("[bold]whole process on the card", f"[bold]{format_memory(plan.total)}", end_section=True)
    for name, value in plan.host_parts.items():
        table.add_row(f"[dim]host memory: {name}", f"[dim]{format_memory(value)}")
    console.print(table)
    verdict = "[green]fits" if plan.fits else "[red]does not fit"
    console.print(
        f"{plan.vram_bytes / GIB:g} GB card: {plan.usable_bytes / GIB:.1f} GiB "
        f"usable; the run {verdict}[/] ({format_gib(plan.total)} as the card counts it)"
    )
    if on_cpu:
        console.print(f"[yellow]{cpu_note(config)}[/]")
    if not plan.fits:
        console.print(oom_advice(config).replace("the GPU ran out of memory. ", ""))
