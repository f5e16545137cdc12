"""Checks that run before the model is loaded, so a bad config fails in seconds, not after minutes of
loading: the dataset, the device, the adapter to continue, the loggers, and (on CUDA) the memory plan."""

from __future__ import annotations

from typing import Any

import torch
from rich.console import Console
from transformers import AutoConfig

from forumtune.base_model import resolve_base_model
from forumtune.config import Config
from forumtune.errors import TrainError
from forumtune.ranks import Ranks
from forumtune.train.loading import check_adapter_dir
from forumtune.train.oom_advice import oom_advice
from forumtune.train.plan import GIB, plan_memory
from forumtune.train.plan_report import format_gib, print_plan
from forumtune.train.reporting import check_loggers_installed

FP8_CAPABILITY = (8, 9)  # the first GPUs with FP8 tensor cores (Ada); Hopper is 9.0


def check_before_loading(
    config: Config, train_records: list[dict[str, Any]], device: torch.device, ranks: Ranks, console: Console
) -> None:
    train = config.train
    global_micro_batch = train.micro_batch_size * ranks.world_size
    if len(train_records) < global_micro_batch:
        raise TrainError(
            f"{len(train_records)} training examples is fewer than train.micro_batch_size="
            f"{train.micro_batch_size}"
            + (f" × {ranks.world_size} GPUs" if ranks.enabled else "")
            + "; lower it or build more data"
        )
    if train.init_adapter is not None:
        check_adapter_dir(train.init_adapter, "train.init_adapter")
    check_loggers_installed(train.report_to)
    check_model_config(config)
    check_base_matmul(config, device)
    if device.type == "cuda":
        check_cuda_dtype(config)
        check_memory_plan(config, device, ranks, console)


def check_model_config(config: Config) -> None:
    """model.base must name a causal LM whose config.json can be read (a hub id fetches only that file)."""
    try:
        AutoConfig.from_pretrained(resolve_base_model(config.model.base))
    except (OSError, ValueError) as exc:
        raise TrainError(
            f"model.base {config.model.base!r}: cannot read its config.json ({exc}); give a local "
            "model dir or a hub id such as mistralai/Mistral-7B-Instruct-v0.2"
        ) from None


def check_base_matmul(config: Config, device: torch.device) -> None:
    """train.base_matmul=fp8 needs FP8 tensor cores: compute capability 8.9 (Ada) or later."""
    if config.train.base_matmul != "fp8":
        return
    if device.type != "cuda":
        raise TrainError(
            f"train.base_matmul=fp8 runs on a CUDA GPU, but this run trains on the {device.type}; "
            "set train.base_matmul=bf16"
        )
    capability = torch.cuda.get_device_capability(device)
    if capability < FP8_CAPABILITY:
        raise TrainError(
            f"train.base_matmul=fp8 needs FP8 tensor cores (compute capability 8.9 or later: Ada, Hopper); "
            f"{torch.cuda.get_device_name(device)} is {capability[0]}.{capability[1]}; "
            "set train.base_matmul=bf16"
        )


def check_cuda_dtype(config: Config) -> None:
    if config.model.compute_dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        raise TrainError(
            "this GPU has no bfloat16 support (it predates Ampere); set model.compute_dtype=float16"
        )


def check_memory_plan(config: Config, device: torch.device, ranks: Ranks, console: Console) -> None:
    """Refuse a run the planner says cannot fit this GPU, with the planner's advice."""
    if not config.train.plan_check:
        return
    if ranks.enabled and config.train.distributed == "fsdp":
        console.print("[dim]memory plan skipped: it does not model FSDP sharding[/dim]")
        return
    if ranks.enabled and config.train.embeddings_on_host == "auto":  # auto keeps it on the GPU under DDP
        config = config.model_copy(
            update={"train": config.train.model_copy(update={"embeddings_on_host": False})}
        )
    # CUDA's total is what the driver leaves to processes: the plan's whole-process count must fit it
    card_gib = torch.cuda.get_device_properties(device).total_memory / GIB
    plan = plan_memory(config, card_gib, usable_gib=card_gib)
    if plan.fits:
        console.print(
            f"[dim]memory plan: {format_gib(plan.total)} of this GPU's {card_gib:.1f} GiB "
            "(whole process: context, workspaces and the allocator's reserve included)[/dim]"
        )
        return
    print_plan(plan, config, console)
    advice = oom_advice(config).replace("the GPU ran out of memory. ", "")
    raise TrainError(
        f"the memory plan needs {format_gib(plan.total)} but this GPU has {card_gib:.1f} GiB. "
        f"{advice} To try anyway, set train.plan_check=false."
    )
