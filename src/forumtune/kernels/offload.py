"""Gradient checkpointing with each checkpointed layer input kept in pinned CPU memory.

Plain checkpointing keeps every decoder layer's input on the GPU until backward: layers × tokens ×
hidden × 2 bytes (1 GiB for a 7B model at 4,096 tokens). Here the input goes to the host right after
the layer's forward and comes back just before the layer is recomputed in backward, so the GPU holds
only the layer being worked on. The copies run on a side stream and overlap the next layer's compute.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class OffloadedCheckpoint(torch.autograd.Function):
    """Forward without saving activations; backward recomputes from the input fetched back from host
    memory. RNG and autocast state are replayed, as torch.utils.checkpoint does, so dropout masks and
    matmul precision are the same in the recompute as in the forward."""

    @staticmethod
    def forward(ctx, run: Callable[..., Any], hidden_states: torch.Tensor, *extra: Any) -> Any:
        ctx.run = run
        ctx.extra = extra
        ctx.device = hidden_states.device
        ctx.autocast = _autocast_state(hidden_states.device)
        ctx.cpu_rng = torch.get_rng_state()
        ctx.device_rng = torch.cuda.get_rng_state(hidden_states.device) if hidden_states.is_cuda else None
        ctx.host_copy, ctx.copied = _copy_to_host(hidden_states)
        with torch.no_grad():
            return run(hidden_states, *extra)

    @staticmethod
    def backward(ctx, *grad_outputs: torch.Tensor) -> tuple[Any, ...]:
        if ctx.copied is not None:
            ctx.copied.synchronize()
        hidden = ctx.host_copy.to(ctx.device, non_blocking=True).detach().requires_grad_(True)
        devices = [ctx.device] if ctx.device_rng is not None else []
        autocast_enabled, autocast_dtype = ctx.autocast
        replay_autocast = torch.autocast(ctx.device.type, dtype=autocast_dtype, enabled=autocast_enabled)
        with torch.random.fork_rng(devices=devices), torch.enable_grad(), replay_autocast:
            torch.set_rng_state(ctx.cpu_rng)
            if ctx.device_rng is not None:
                torch.cuda.set_rng_state(ctx.device_rng, ctx.device)
            outputs = ctx.run(hidden, *ctx.extra)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        pairs = [(out, grad) for out, grad in zip(outputs, grad_outputs, strict=False)
                 if isinstance(out, torch.Tensor) and out.requires_grad and grad is not None]
        torch.autograd.backward([out for out, _ in pairs], [grad for _, grad in pairs])
        ctx.host_copy = None
        return (None, hidden.grad) + (None,) * len(ctx.extra)


def offloaded_checkpoint(run: Callable[..., Any], hidden_states: torch.Tensor, *extra: Any, **_: Any) -> Any:
    """Drop-in for the `_gradient_checkpointing_func(function, *args)` that transformers layers call."""
    return OffloadedCheckpoint.apply(run, hidden_states, *extra)


def use_offloaded_checkpointing(model: torch.nn.Module) -> int:
    """Switch every checkpointed layer of `model` (checkpointing already enabled) to host offload;
    returns how many layers were switched."""
    switched = 0
    for module in model.modules():
        if getattr(module, "gradient_checkpointing", False) and hasattr(module, "_gradient_checkpointing_func"):
            module._gradient_checkpointing_func = offloaded_checkpoint
            switched += 1
    return switched


_copy_streams: dict[torch.device, torch.cuda.Stream] = {}


def _copy_to_host(tensor: torch.Tensor) -> tuple[torch.Tensor, torch.cuda.Event | None]:
    if not tensor.is_cuda:
        return tensor.detach().clone(), None
    stream = _copy_streams.setdefault(tensor.device, torch.cuda.Stream(tensor.device))
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    stream.wait_stream(torch.cuda.current_stream(tensor.device))
    with torch.cuda.stream(stream):
        host.copy_(tensor.detach(), non_blocking=True)
        done = torch.cuda.Event()
        done.record(stream)
    tensor.record_stream(stream)  # the caching allocator must not reuse its memory before the copy ends
    return host, done


def _autocast_state(device: torch.device) -> tuple[bool, torch.dtype]:
    kind = device.type
    return torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind)

