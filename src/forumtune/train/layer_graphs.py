"""Each checkpointed decoder layer's forward, and its recompute + backward, replayed as CUDA graphs.

Profiled on an H100 at 2×2048, a QLoRA step of a 7B model launched about 9,500 kernels from Python
(transformers, peft, bitsandbytes, liger and the autograd engine); at 2×512 the GPU idled most of the
step waiting for the host to launch them. For a given batch shape a layer runs the same kernels on
the same buffers every step, so the first time a shape repeats, the layer's no-grad forward and its
recompute + backward are captured once into CUDA graphs and then replayed: one launch per layer and
pass instead of a few hundred.

What a replay reads and writes must live at fixed addresses, so for each batch shape there is one
set of static buffers shared by all layers (the layer input, the other tensor arguments such as the
rotary cos/sin and the attention mask, the output, the gradient in and the gradient out): a replay
copies its inputs in and its outputs out. The layer input and output buffers of all shapes are views of
two buffers sized for the longest micro-batch, and a layer's output gradient is read where the next
layer's graph wrote its input gradient. All graphs draw their intermediates from one memory pool;
nothing in it outlives a replay, so the pool is about one layer's recompute + backward. LoRA
gradients are added inside the graph to buffers that stay put: `bind_gradient_buffers` hands the
same tensors back to `param.grad` if the optimizer dropped them. Dropout replays its masks: the
generator state saved at the forward is restored before the backward's replay, as the eager
recompute does.

Not captured (the caller runs eagerly): the first time a layer meets a shape (that run also warms up
cuBLAS and Triton), arguments that are neither tensors nor plain values, and anything after a capture
failed (the reason is kept in `LayerGraphs.disabled`).
"""

from __future__ import annotations

import threading
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch.utils import _pytree as pytree

# keyword arguments transformers passes down to every layer that a decoder layer does not read and that
# change every step (the loss normaliser): kept out of the captured call so they do not force a recapture
IGNORED_KEYWORDS = frozenset({"num_items_in_batch"})
PLAIN_VALUES = (type(None), bool, int, float, str, torch.dtype, torch.device)


@dataclass
class _Call:
    """A layer call split into what is fixed for the graph (the key) and the tensors copied per replay."""

    key: tuple
    signature: tuple  # the key without the layer: calls that can share static buffers
    rebuild: Callable[[list[torch.Tensor]], Callable[..., Any]]
    tensors: list[torch.Tensor]


@dataclass
class _Statics:
    """The fixed-address buffers of one batch shape, shared by every layer's graphs."""

    hidden: torch.Tensor
    tensors: list[torch.Tensor]
    sources: list[Any] = field(default_factory=list)  # (weakref, version) of what each buffer last copied
    outputs: list[torch.Tensor] | None = None
    grad_outputs: list[torch.Tensor] | None = None
    hidden_out: torch.Tensor | None = None  # the gradient of `hidden`, written by the backward graphs

    def load(self, hidden: torch.Tensor, tensors: Sequence[torch.Tensor]) -> None:
        self.hidden.copy_(hidden)
        for index, (static, source) in enumerate(zip(self.tensors, tensors, strict=True)):
            ref, version = self.sources[index]
            if ref() is source and source._version == version:
                continue  # the same rotary tables or mask as the layer before: already there
            static.copy_(source)
            self.sources[index] = (weakref.ref(source), source._version)


@dataclass
class _LayerGraphs:
    signature: tuple
    seen: int = 0
    output_spec: Any = None  # the structure of the layer's output, from its first (eager) run
    output_tensors: bool = False
    forward: torch.cuda.CUDAGraph | None = None
    backward: torch.cuda.CUDAGraph | None = None
    params: list[torch.nn.Parameter] = field(default_factory=list)


class LayerGraphs:
    """The captured graphs of one model's checkpointed layers, per layer and batch shape."""

    def __init__(self, device: torch.device, *, max_shapes: int = 16, max_tokens: int | None = None):
        """`max_tokens`: the most tokens a micro-batch can have; the layer input and output buffers of every
        shape are then views of two buffers of that size instead of a pair per shape."""
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        self.device = device
        self.max_shapes = max_shapes
        self.max_tokens = max_tokens
        self._arenas: tuple[torch.Tensor, torch.Tensor] | None = None
        self.pool: Any = None  # the graphs' shared memory pool and capture stream, made at the first capture
        self.stream: torch.cuda.Stream | None = None
        self.statics: dict[tuple, _Statics] = {}
        self.layers: dict[tuple, _LayerGraphs] = {}
        self.grad_buffers: dict[int, torch.Tensor] = {}
        self.disabled: str | None = None
        self.active = True  # False: every call runs eagerly, graphs kept (to compare the two)
        self._released_first_step = False
        self.captured = 0

    # ---- forward (no grad) ----

    def forward(
        self,
        layer: torch.nn.Module,
        run: Callable[..., Any],
        hidden: torch.Tensor,
        extra: tuple,
        autocast: tuple[bool, torch.dtype],
    ) -> Any:
        """The layer's output: from its forward graph, or run eagerly (the first time a shape comes, and
        whenever graphs do not apply)."""
        call = self._split(layer, run, hidden, extra, autocast) if hidden.is_cuda else None
        entry = self._entry(call) if call is not None else None
        if entry is not None and entry.forward is None:
            entry.seen += 1
        statics = self._statics(call, hidden) if entry is not None and entry.seen >= 2 else None
        if statics is None or (entry.forward is None and entry.output_spec is None):
            outputs = run(hidden, *extra)
            if entry is not None:
                leaves, entry.output_spec = pytree.tree_flatten(outputs)
                entry.output_tensors = all(isinstance(leaf, torch.Tensor) for leaf in leaves)
            return outputs
        statics.load(hidden, call.tensors)
        if entry.forward is None and not self._capture_forward(entry, call, statics, autocast):
            return run(hidden, *extra)
        entry.forward.replay()
        return pytree.tree_unflatten([t.clone() for t in statics.outputs], entry.output_spec)

    def _capture_forward(
        self, entry: _LayerGraphs, call: _Call, statics: _Statics, autocast: tuple[bool, torch.dtype]
    ) -> bool:
        if not entry.output_tensors:
            self._disable("a layer output that is not a tensor")
            return False
        run = call.rebuild(statics.tensors)

        def body() -> None:
            with torch.no_grad(), self._autocast(autocast):
                outputs = pytree.tree_leaves(run(statics.hidden))
            if statics.outputs is None:  # a layer's output is the shape of its input: one buffer serves both
                fits = len(outputs) == 1 and outputs[0].shape == statics.hidden_out.shape
                statics.outputs = [
                    statics.hidden_out
                    if fits and o.dtype == statics.hidden_out.dtype
                    else torch.empty_like(o)
                    for o in outputs
                ]
            for static, out in zip(statics.outputs, outputs, strict=True):
                static.copy_(out)

        entry.forward = self._capture(body)
        return entry.forward is not None

    # ---- recompute + backward ----

    def backward(
        self,
        layer: torch.nn.Module,
        run: Callable[..., Any],
        fetched: list[torch.Tensor],
        extra: tuple,
        grad_outputs: Sequence[torch.Tensor | None],
        autocast: tuple[bool, torch.dtype],
        release_unread_outputs: Callable[[list[torch.Tensor]], None] | None = None,
    ) -> torch.Tensor | None:
        """Recompute the layer from its input `fetched[0]`, add its LoRA gradients to `param.grad` and return
        the gradient of that input; None when the caller must do it eagerly. The caller restores the
        forward's RNG state. Once the replay has its own copy of the input, `fetched` is emptied: the caller
        passes the only reference, so the fetched input (one hidden-state-sized tensor) is freed before the
        replay instead of after it. `release_unread_outputs` frees the recomputed outputs' memory (the backward
        reads only their gradients) where the layer allows it (layer_checkpointing.release_unread_outputs)."""
        hidden = fetched[0]
        call = self._split(layer, run, hidden, extra, autocast) if hidden.is_cuda else None
        if call is None or any(g is None for g in grad_outputs):
            return None
        entry = self._entry(call)
        if entry.backward is None and entry.seen < 2:  # the forward's count: a shape's first run stays eager
            return None
        statics = self._statics(call, hidden)
        if statics is None:
            return None
        if statics.grad_outputs is None:
            statics.grad_outputs = [torch.empty_like(g) for g in grad_outputs]
            if len(grad_outputs) == 1 and _same_layout(grad_outputs[0], statics.hidden_out):
                # a decoder layer's output gradient is the input gradient of the layer after it, which that
                # layer's graph left in hidden_out: read it there, and write this layer's over it at the end
                statics.grad_outputs = [statics.hidden_out]
        if [g.shape for g in statics.grad_outputs] != [g.shape for g in grad_outputs]:
            return None
        if entry.backward is None:
            entry.params = [p for p in layer.parameters() if p.requires_grad]
        self.bind_gradient_buffers(entry.params)
        statics.load(hidden, call.tensors)
        for static, grad in zip(statics.grad_outputs, grad_outputs, strict=True):
            if grad.data_ptr() != static.data_ptr() or not _same_layout(grad, static):
                static.copy_(grad)
        if entry.backward is None and not self._capture_backward(
            entry, call, statics, autocast, release_unread_outputs
        ):
            return None
        fetched.clear()
        del hidden
        entry.backward.replay()
        if statics.grad_outputs[0] is statics.hidden_out:
            return (
                statics.hidden_out
            )  # handed to the layer before, which reads it before anything rewrites it
        return statics.hidden_out.clone()

    def _capture_backward(
        self,
        entry: _LayerGraphs,
        call: _Call,
        statics: _Statics,
        autocast: tuple[bool, torch.dtype],
        release_unread_outputs: Callable[[list[torch.Tensor]], None] | None,
    ) -> bool:
        run = call.rebuild(statics.tensors)
        params = entry.params

        def body() -> None:
            hidden = statics.hidden.detach().requires_grad_(True)
            with torch.enable_grad(), self._autocast(autocast):
                outputs = pytree.tree_leaves(run(hidden))
            if release_unread_outputs is not None:
                release_unread_outputs(outputs)
            if len(outputs) != len(statics.grad_outputs) or not all(out.requires_grad for out in outputs):
                raise _NotCapturable("layer outputs and their gradients do not pair up")
            grads = torch.autograd.grad(outputs, [hidden, *params], statics.grad_outputs, allow_unused=True)
            if grads[0] is None:
                raise _NotCapturable("a layer output that does not depend on the layer input")
            statics.hidden_out.copy_(grads[0])
            present = [(p.grad, g) for p, g in zip(params, grads[1:], strict=True) if g is not None]
            if present:
                torch._foreach_add_([buffer for buffer, _ in present], [g for _, g in present])

        entry.backward = self._capture(body)
        return entry.backward is not None

    def after_step(self) -> None:
        """Call after each optimizer step: after the first, the blocks its eager layers left cached are
        released, so that the graphs' own pool, made in the next step, does not sit beside them."""
        if not self._released_first_step:
            self._released_first_step = True
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def bind_gradient_buffers(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Point each `param.grad` at the buffer the graphs add into: after `zero_grad(set_to_none=True)`
        it is zeroed and handed back; a gradient set from outside is copied into it."""
        for param in params:
            buffer = self.grad_buffers.get(id(param))
            grad = param.grad
            if buffer is None:
                buffer = grad if grad is not None and grad.is_contiguous() else torch.zeros_like(param)
                self.grad_buffers[id(param)] = buffer
            elif grad is buffer:
                continue
            elif grad is None:
                buffer.zero_()
            else:
                buffer.copy_(grad)
            param.grad = buffer

    # ---- shared machinery ----

    def _capture(self, body: Callable[[], None]) -> torch.cuda.CUDAGraph | None:
        """`body` captured on the side stream into the shared pool. The first eager run of the same shape
        already set up cuDNN plans and Triton kernels; cuBLAS needs a workspace for the capture stream
        and this thread, set up outside the capture. The RNG state is left as it was, so the replay that
        follows draws what an eager run would have. On failure graphs are switched off for good."""
        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        rng = torch.cuda.get_rng_state(self.device)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.stream(self.stream):
                _set_up_cublas(self.device)
                graph.capture_begin(pool=self.pool, capture_error_mode="thread_local")
                try:
                    body()
                finally:
                    graph.capture_end()
        except _NotCapturable as exc:
            self._disable(str(exc))
            graph = None
        except RuntimeError as exc:  # an op that cannot be captured (a host sync, a CPU tensor...)
            self._disable(f"capture failed: {exc}")
            graph = None
        torch.cuda.set_rng_state(rng, self.device)
        current.wait_stream(self.stream)
        if graph is not None:
            self.captured += 1
        return graph

    def _disable(self, reason: str) -> None:
        if self.disabled is None:
            warnings.warn(
                f"CUDA graphs off for this run ({reason}); layers run kernel by kernel", stacklevel=3
            )
        self.disabled = reason
        self.layers.clear()
        self.statics.clear()

    def _entry(self, call: _Call) -> _LayerGraphs:
        entry = self.layers.get(call.key)
        if entry is None:
            entry = self.layers[call.key] = _LayerGraphs(signature=call.signature)
        return entry

    def _statics(self, call: _Call, hidden: torch.Tensor) -> _Statics | None:
        """The shape's static buffers; None once `max_shapes` shapes have theirs (later shapes stay eager
        rather than evict, which could recapture every step)."""
        statics = self.statics.get(call.signature)
        if statics is None:
            if len(self.statics) >= self.max_shapes:
                return None
            if self.stream is None:
                self.pool, self.stream = torch.cuda.graph_pool_handle(), torch.cuda.Stream(self.device)
                # the blocks the eager layers left cached: the graphs' own pool takes their place. Emptied
                # before the static buffers are made, so that none of them pins a cached segment.
                torch.cuda.empty_cache()
            layer_in, layer_out = self._layer_buffers(hidden)
            statics = _Statics(
                hidden=layer_in, tensors=[torch.empty_like(t) for t in call.tensors], hidden_out=layer_out
            )
            statics.sources = [(_dead_ref, -1)] * len(call.tensors)
            self.statics[call.signature] = statics
        return statics

    def _layer_buffers(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The static layer input and output of `hidden`'s shape. Shapes can share memory: a replay copies
        its input in and its output out, and one micro-batch's layers all have the same shape."""
        tokens = hidden.numel() // hidden.shape[-1]
        if self.max_tokens is None or tokens > self.max_tokens or not hidden.is_contiguous():
            return torch.empty_like(hidden), torch.empty_like(hidden)
        if (
            self._arenas is None
            or self._arenas[0].dtype != hidden.dtype
            or self._arenas[0].numel() != self.max_tokens * hidden.shape[-1]
        ):
            size = self.max_tokens * hidden.shape[-1]
            self._arenas = tuple(
                torch.empty(size, dtype=hidden.dtype, device=hidden.device) for _ in range(2)
            )
        return tuple(arena[: hidden.numel()].view(hidden.shape) for arena in self._arenas)

    def _split(
        self,
        layer: torch.nn.Module,
        run: Callable[..., Any],
        hidden: torch.Tensor,
        extra: tuple,
        autocast: tuple[bool, torch.dtype],
    ) -> _Call | None:
        if (
            not self.active
            or self.disabled is not None
            or not isinstance(run, partial)
            or hidden.device != self.device
        ):
            return None
        keywords = {k: v for k, v in run.keywords.items() if k not in IGNORED_KEYWORDS}
        leaves, spec = pytree.tree_flatten((run.args, keywords, extra))
        shared, own = [], [id(layer)]
        for leaf in leaves:
            if isinstance(leaf, torch.Tensor):
                if leaf.device != hidden.device:
                    return None
                shared.append(("tensor", tuple(leaf.shape), leaf.stride(), leaf.dtype))
            elif isinstance(leaf, PLAIN_VALUES):
                shared.append((type(leaf), leaf))
            elif isinstance(leaf, torch.nn.Module):
                shared.append("module")
                own.append(id(leaf))
            else:
                return None  # e.g. a cache object: unknown state, not safe to freeze
        func = run.func
        own.append(id(getattr(func, "__self__", None)))
        signature = (
            str(spec),
            tuple(shared),
            tuple(hidden.shape),
            hidden.stride(),
            hidden.dtype,
            autocast,
            id(getattr(func, "__func__", func)),
        )
        positions = [i for i, leaf in enumerate(leaves) if isinstance(leaf, torch.Tensor)]

        def rebuild(statics: list[torch.Tensor]) -> Callable[..., Any]:
            filled = list(leaves)
            for position, static in zip(positions, statics, strict=True):
                filled[position] = static
            args, kwargs, rest = pytree.tree_unflatten(filled, spec)
            return lambda hidden_states: func(*args, hidden_states, *rest, **kwargs)

        return _Call(
            key=(*own, *signature),
            signature=signature,
            rebuild=rebuild,
            tensors=[leaves[i] for i in positions],
        )

    def _autocast(self, state: tuple[bool, torch.dtype]) -> torch.autocast:
        enabled, dtype = state
        return torch.autocast(self.device.type, dtype=dtype, enabled=enabled, cache_enabled=False)


def _same_layout(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.stride() == b.stride()


class _NotCapturable(Exception):
    pass


_cublas_ready: set[tuple[int, int]] = set()


def _set_up_cublas(device: torch.device) -> None:
    """One small matmul and one matmul with a bias epilogue on the current stream, so this thread's cuBLAS
    and cuBLASLt handles have their workspace for it before a capture (inside one it would come from the
    graphs' pool)."""
    key = (threading.get_ident(), torch.cuda.current_stream(device).cuda_stream)
    if key in _cublas_ready:
        return
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        a = torch.ones(16, 16, device=device, dtype=dtype)
        torch.mm(a, a)
        torch.addmm(a[0], a, a)
    _cublas_ready.add(key)


def _dead_ref() -> None:
    return None
