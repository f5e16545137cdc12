"""Multi-GPU training through PyTorch's own engines: launched by `torchrun --nproc-per-node N forumtune train`.

Each process trains on its own slice of every global micro-batch (see batches.micro_batches), so the
global batch is micro_batch_size × grad_accum_steps × world_size and a run means the same as a
single-GPU run with that batch. `train.distributed` picks the engine: DDP keeps a whole copy of the
4-bit base and the adapter on each GPU and averages gradients; FSDP2 (`fully_shard`) shards the base
(its 4-bit weights stored in the compute dtype so they can be split) and the adapter across GPUs.
Only rank 0 writes checkpoints, metrics and the adapter.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from peft import PeftModel

from forumtune.ranks import Ranks


def start(ranks: Ranks, device: torch.device) -> None:
    if not ranks.enabled or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def stop(ranks: Ranks) -> None:
    if ranks.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap(
    model: PeftModel, ranks: Ranks, strategy: str, device: torch.device, compute_dtype: torch.dtype
) -> torch.nn.Module:
    """The model as the engine trains it: itself on one process, DDP, or sharded in place by FSDP2."""
    if not ranks.enabled:
        return model
    if strategy == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)
        for layer in decoder_layers(model):
            fully_shard(layer, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(model: torch.nn.Module) -> PeftModel:
    return model.module if hasattr(model, "no_sync") and hasattr(model, "module") else model


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [module for module in model.modules() if isinstance(module, GradientCheckpointingLayer)]


def is_sharded(model: torch.nn.Module) -> bool:
    return hasattr(model, "set_requires_gradient_sync")


@contextlib.contextmanager
def gradient_sync(model: torch.nn.Module, enabled: bool) -> Iterator[None]:
    """Reduce gradients across GPUs only on the last micro-batch of an accumulation step."""
    if is_sharded(model):
        model.set_requires_gradient_sync(enabled)
        yield
    elif hasattr(model, "no_sync") and not enabled:
        with model.no_sync():
            yield
    else:
        yield


def sum_across(ranks: Ranks, value: float, device: torch.device) -> float:
    if not ranks.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor)


def gather_objects(ranks: Ranks, value: Any) -> list[Any]:
    if not ranks.enabled:
        return [value]
    gathered: list[Any] = [None] * ranks.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def barrier(ranks: Ranks) -> None:
    if ranks.enabled:
        dist.barrier()


def trainable_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Full (unsharded) trainable weights on every rank's CPU, keyed as in the unwrapped model."""
    if is_sharded(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
        return get_model_state_dict(model, options=options)
    return {name: p.detach().cpu() for name, p in unwrap(model).named_parameters() if p.requires_grad}


def optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    if is_sharded(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(
            model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
    return optimizer.state_dict()


def load_optimizer_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    if is_sharded(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(
            model, optimizer, optim_state_dict=state, options=StateDictOptions(full_state_dict=True)
        )
    else:
        optimizer.load_state_dict(state)
