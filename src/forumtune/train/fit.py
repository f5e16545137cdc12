"""`forumtune plan --fit`: the config changes (checkpointing mode, micro-batch, gradient accumulation, and
only where nothing else fits a shorter sequence) that make a run fit the card, judged by the memory plan."""

from __future__ import annotations

from rich.console import Console

from forumtune.config import Config
from forumtune.train.plan import GIB, ModelShape, leanest, load_shape, usable_bytes, whole_process_bytes

CHECKPOINTING_FASTEST_FIRST: tuple[bool | str, ...] = (False, True, "offload")
LARGEST_MICRO_BATCH = 64


def fit_settings(config: Config, vram_gib: float | None = None) -> dict[str, object] | None:
    """The config changes (dotted key -> value) that make the run fit the card, or None when nothing does.

    The sequence length is the data's, so it is kept if any checkpointing mode fits at all, and halved
    only when none does. At that length it takes the fastest checkpointing mode that still reaches the
    configured micro-batch (or else the mode that allows the largest one), the largest micro-batch that
    divides the effective batch, and the gradient accumulation that keeps the effective batch. Fitting is
    by the whole process's count against what the card leaves to processes (`usable_bytes`)."""
    config = leanest(config)  # the trainer settles train.*'s autos to fit the card where they can
    shape = load_shape(config)
    usable = usable_bytes(config, vram_gib)
    effective = config.train.micro_batch_size * config.train.grad_accum_steps
    seq_len = config.build.max_seq_len
    while seq_len >= 64:
        options = [
            (mode, largest_fitting_micro_batch(config, shape, seq_len, mode, usable))
            for mode in CHECKPOINTING_FASTEST_FIRST
        ]
        options = [(mode, micro) for mode, micro in options if micro]
        if options:
            wanted = config.train.micro_batch_size
            mode, micro = next(((m, b) for m, b in options if b >= wanted), max(options, key=lambda o: o[1]))
            micro = max(d for d in range(1, min(micro, effective) + 1) if effective % d == 0)
            changes = {
                "train.gradient_checkpointing": mode,
                "train.micro_batch_size": micro,
                "train.grad_accum_steps": effective // micro,
                "build.max_seq_len": seq_len,
            }
            current = {
                "train.gradient_checkpointing": config.train.gradient_checkpointing,
                "train.micro_batch_size": config.train.micro_batch_size,
                "train.grad_accum_steps": config.train.grad_accum_steps,
                "build.max_seq_len": config.build.max_seq_len,
            }
            return {key: value for key, value in changes.items() if current[key] != value}
        seq_len //= 2
    return None


def largest_fitting_micro_batch(
    config: Config, shape: ModelShape, seq_len: int, mode: bool | str, usable: float
) -> int:
    best = 0
    for micro in range(1, LARGEST_MICRO_BATCH + 1):
        if whole_process_bytes(config, shape, micro, seq_len, mode) > usable:
            break
        best = micro
    return best


def card_label(config: Config, vram_gib: float | None) -> str:
    """'8 GB card: 7.6 GiB usable': the card as sold, and what the fit is measured against."""
    return (
        f"{vram_gib or config.plan.vram_gib:g} GB card: {usable_bytes(config, vram_gib) / GIB:.1f} GiB usable"
    )


def print_fit(config: Config, vram_gib: float | None, console: Console) -> dict[str, object] | None:
    card = card_label(config, vram_gib)
    changes = fit_settings(config, vram_gib)
    if changes is None:
        console.print(
            f"[red]nothing fits ({card})[/], even micro-batch 1 × 64 tokens with offloaded "
            "checkpoints: pick a smaller model.base or a larger card"
        )
    elif not changes:
        console.print(f"[green]the config already fits as it is ({card})[/]")
    else:
        console.print(f"to fit ({card}), change:")
        for key, value in changes.items():
            shown = str(value).lower() if isinstance(value, bool) else value
            console.print(f"  --set {key}={shown}")
    return changes
