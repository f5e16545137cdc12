"""Gradient checkpointing of decoder layers, with each layer input optionally kept in pinned CPU memory.

Plain checkpointing keeps every decoder layer's input on the GPU until backward: layers × tokens ×
hidden × 2 bytes (1 GiB for a 7B model at 4,096 tokens). With `offload` the input goes to the host
right after the layer's forward and comes back while the layer after it runs its backward, so the GPU
holds only the layers being worked on. Both copies run on a side stream and overlap compute. With
`graphs` (a `layer_graphs.LayerGraphs`), the layer's forward and its recompute + backward are replayed
as CUDA graphs once a batch shape repeats.
"""

from __future__ import annotations

import collections
import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from forumtune.kernels.lora_linear import LAYERS_ENDING_IN_DOWN_PROJ, recomputing_for_backward
from forumtune.train.layer_graphs import LayerGraphs


@dataclass(frozen=True)
class LayerSetup:
    layer: torch.nn.Module
    offload: bool
    graphs: LayerGraphs | None


class OffloadedCheckpoint(torch.autograd.Function):
    """Forward without saving activations; backward recomputes from the input kept on the GPU or fetched
    back from host memory. RNG and autocast state are replayed, as torch.utils.checkpoint does, so
    dropout masks and matmul precision are the same in the recompute as in the forward."""

    @staticmethod
    def forward(
        ctx,
        setup: LayerSetup,
        run: Callable[..., Any],
        requires_grad: torch.Tensor,
        hidden_states: torch.Tensor,
        *extra: Any,
    ) -> Any:
        """`requires_grad`: REQUIRES_GRAD, so that the outputs require gradients (the LoRA weights inside
        are not inputs of this function) whether or not the layer input does."""
        ctx.setup, ctx.run, ctx.extra = setup, run, extra
        ctx.device = hidden_states.device
        ctx.autocast = autocast_state(hidden_states.device)
        ctx.cpu_rng = torch.get_rng_state()
        ctx.device_rng = torch.cuda.get_rng_state(hidden_states.device) if hidden_states.is_cuda else None
        global _last_parked
        ctx.parked = _Parked(hidden_states) if setup.offload else _Kept(hidden_states)
        ctx.before, _last_parked = _last_parked, ctx.parked
        with torch.no_grad():
            if setup.graphs is not None:
                return setup.graphs.forward(setup.layer, run, hidden_states, extra, ctx.autocast)
            return run(hidden_states, *extra)

    @staticmethod
    def backward(ctx, *grad_outputs: torch.Tensor) -> tuple[Any, ...]:
        fetched = [ctx.parked.take()]  # the only reference: the graphs free it once they hold a copy
        # backward runs the layers in reverse: fetch the next one's input now, or where the layer says
        _prefetch.pending = ctx.before
        if not defers_prefetch(ctx.setup, fetched[0]):
            prefetch_deferred()
        try:
            grad = _layer_backward(ctx, fetched, grad_outputs)
        finally:
            prefetch_deferred()
        ctx.parked = ctx.before = None
        return (None, None, None, grad if ctx.needs_input_grad[3] else None) + (None,) * len(ctx.extra)


def defers_prefetch(setup: LayerSetup, hidden: torch.Tensor) -> bool:
    """Whether the layer starts the next input's copy back itself, later in its backward (without CUDA
    graphs, whose replay cannot call back): train/recomputed_norm.py, on long rows."""
    defers = getattr(setup.layer, "_forumtune_defers_prefetch", None)
    return setup.graphs is None and defers is not None and defers(hidden.numel() // hidden.shape[-1])


def prefetch_deferred() -> None:
    """Start the copy back of the next layer input that this layer's backward left for later, if any."""
    pending, _prefetch.pending = getattr(_prefetch, "pending", None), None
    if pending is not None:
        pending.prefetch()


def _layer_backward(ctx, fetched: list[torch.Tensor], grad_outputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    devices = [ctx.device] if ctx.device_rng is not None else []
    release = release_unread_outputs if result_only_summed(ctx.setup.layer) else None
    with torch.random.fork_rng(devices=devices), recomputing_for_backward():
        torch.set_rng_state(ctx.cpu_rng)
        if ctx.device_rng is not None:
            torch.cuda.set_rng_state(ctx.device_rng, ctx.device)
        graphs = ctx.setup.graphs
        grad = (
            None
            if graphs is None
            else graphs.backward(
                ctx.setup.layer, ctx.run, fetched, ctx.extra, grad_outputs, ctx.autocast, release
            )
        )
        if grad is None:
            grad = _recompute_and_backward(ctx, fetched.pop(), grad_outputs, release)
    return grad


def result_only_summed(layer: torch.nn.Module | None) -> bool:
    """Whether the layer's result is a sum nothing saves for the backward (Llama-style layers end in
    `residual + mlp(...)`, kernels/lora_linear.py): its recomputed value can be freed before the backward."""
    return layer is not None and type(layer).__name__ in LAYERS_ENDING_IN_DOWN_PROJ


def release_unread_outputs(outputs: list[torch.Tensor]) -> None:
    """Free the memory of a recomputed layer's outputs, which the backward starts from but never reads:
    one hidden-state-sized tensor through the layer's backward. Each output keeps its autograd node and
    shape but points at one broadcast zero instead (no storage resize: that would queue a copy, which a
    CUDA graph's capture may refuse)."""
    for out in outputs:
        out.data = out.new_zeros(()).expand(out.shape)


def _recompute_and_backward(
    ctx,
    hidden: torch.Tensor,
    grad_outputs: tuple[torch.Tensor, ...],
    release: Callable[[list[torch.Tensor]], None] | None,
) -> torch.Tensor:
    hidden = hidden.detach().requires_grad_(ctx.needs_input_grad[3])
    autocast_enabled, autocast_dtype = ctx.autocast
    with torch.enable_grad(), torch.autocast(ctx.device.type, dtype=autocast_dtype, enabled=autocast_enabled):
        outputs = ctx.run(hidden, *ctx.extra)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    if release is not None:
        release([out for out in outputs if isinstance(out, torch.Tensor)])
    pairs = [
        (out, grad)
        for out, grad in zip(outputs, grad_outputs, strict=False)
        if isinstance(out, torch.Tensor) and out.requires_grad and grad is not None
    ]
    if pairs:
        torch.autograd.backward([out for out, _ in pairs], [grad for _, grad in pairs])
    return hidden.grad


def layer_checkpoint(
    setup: LayerSetup, run: Callable[..., Any], hidden_states: torch.Tensor, *extra: Any, **_: Any
) -> Any:
    """Drop-in for the `_gradient_checkpointing_func(function, *args)` that transformers layers call."""
    return OffloadedCheckpoint.apply(setup, run, REQUIRES_GRAD, hidden_states, *extra)


def offloaded_checkpoint(run: Callable[..., Any], hidden_states: torch.Tensor, *extra: Any, **_: Any) -> Any:
    """`layer_checkpoint` for a function that is not a model layer: offloaded, no graphs."""
    return OffloadedCheckpoint.apply(
        LayerSetup(layer=None, offload=True, graphs=None), run, REQUIRES_GRAD, hidden_states, *extra
    )


def use_layer_checkpointing(
    model: torch.nn.Module, *, offload: bool = True, graphs: LayerGraphs | None = None
) -> int:
    """Switch every checkpointed layer of `model` (checkpointing already enabled) to this checkpointing,
    offloaded to the host or kept on the GPU, with or without CUDA graphs; returns how many layers. These
    layers need no input that requires gradients (REQUIRES_GRAD), so transformers' hook that makes the
    frozen embedding's output one, which its checkpointing switches on, is taken off again."""
    stop_input_require_grads(model)
    switched = 0
    for module in model.modules():
        if getattr(module, "gradient_checkpointing", False) and hasattr(
            module, "_gradient_checkpointing_func"
        ):
            setup = LayerSetup(layer=module, offload=offload, graphs=graphs)
            module._gradient_checkpointing_func = functools.partial(layer_checkpoint, setup)
            switched += 1
    return switched


def stop_input_require_grads(model: torch.nn.Module) -> None:
    """Undo `enable_input_require_grads` on `model`, every call of it: transformers keeps the handles of the
    last call only, and peft calls it again on an unquantized model."""
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    hooks = getattr(embeddings, "_forward_hooks", {})
    for key in [key for key, hook in hooks.items() if "enable_input_require_grads" in hook.__qualname__]:
        del hooks[key]


# Every checkpointed call's extra input. A frozen embedding's output would otherwise have to be made a leaf
# that requires gradients (transformers' enable_input_require_grads), and autograd keeps such a leaf, one
# hidden-state-sized tensor, through the whole backward. No gradient is ever returned for it.
REQUIRES_GRAD = torch.zeros((), requires_grad=True)
_copy_streams: dict[torch.device, torch.cuda.Stream] = {}
_prefetch = threading.local()  # .pending: the next layer input whose copy back a layer's backward deferred
_last_parked: _Parked | None = None
# The host copy of a layer input still in flight keeps that input's GPU memory from being reused: the
# allocator frees it only once the copy's event has completed. The forward queues work faster than the
# GPU runs it (a graph replay takes microseconds to launch), so without a bound every layer input of
# the forward would be held at once (1 GiB for a 7B model at 4,096 tokens). Waiting for the copy from
# this many layers back keeps that many layers of work queued, plenty to keep the GPU busy.
COPIES_IN_FLIGHT = 2
_copies_in_flight: collections.deque[torch.cuda.Event] = collections.deque()


class _Parked:
    """One layer input in pinned host memory, and its way back to the device."""

    def __init__(self, tensor: torch.Tensor):
        self.device = tensor.device
        self.fetched: torch.Tensor | None = None
        self.ready: torch.cuda.Event | None = None
        if not tensor.is_cuda:
            self.host, self.stored = tensor.detach().clone(), None
            return
        stream = _copy_stream(tensor.device)
        self.host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        stream.wait_stream(torch.cuda.current_stream(tensor.device))
        with torch.cuda.stream(stream):
            self.host.copy_(tensor.detach(), non_blocking=True)
            self.stored = torch.cuda.Event()
            self.stored.record(stream)
        tensor.record_stream(stream)  # the caching allocator must not reuse its memory before the copy ends
        _copies_in_flight.append(self.stored)
        while len(_copies_in_flight) > COPIES_IN_FLIGHT:
            _copies_in_flight.popleft().synchronize()

    def prefetch(self) -> None:
        """Start the copy back on the side stream (after the work queued so far on the compute stream,
        since the destination is allocated from the compute stream's memory)."""
        if self.host is None or self.fetched is not None or self.device.type != "cuda":
            return
        compute = torch.cuda.current_stream(self.device)
        stream = _copy_stream(self.device)
        self.fetched = torch.empty(self.host.shape, dtype=self.host.dtype, device=self.device)
        stream.wait_stream(compute)
        stream.wait_event(self.stored)
        with torch.cuda.stream(stream):
            self.fetched.copy_(self.host, non_blocking=True)
            self.ready = torch.cuda.Event()
            self.ready.record(stream)

    def take(self) -> torch.Tensor:
        if self.device.type != "cuda":
            tensor = self.host
        else:
            self.prefetch()
            torch.cuda.current_stream(self.device).wait_event(self.ready)
            tensor = self.fetched
        self.host = self.fetched = None  # the pinned buffer is freed once the copy back is queued
        return tensor


class _Kept:
    """A layer input left on its device (checkpointing without offload)."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor: torch.Tensor | None = tensor.detach()

    def prefetch(self) -> None:
        return None

    def take(self) -> torch.Tensor:
        tensor, self.tensor = self.tensor, None
        return tensor


def _copy_stream(device: torch.device) -> torch.cuda.Stream:
    return _copy_streams.setdefault(device, torch.cuda.Stream(device))


def autocast_state(device: torch.device) -> tuple[bool, torch.dtype]:
    kind = device.type
    return torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind)
