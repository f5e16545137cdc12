"""Causal attention run one group of heads at a time, forward and backward (`train.split_attention`).

At long sequences flash attention's backward is the largest part of a checkpointed layer's peak once the
MLP runs in tiles (benchmarks/RESULTS.md §3b): for all heads at once it holds dq, an fp32 accumulator for
dq (two hidden-state-sized tensors), and with grouped-query attention dk and dv expanded to every query
head before they are summed, 5.5 hidden-state-sized tensors beside the gradients it returns. Heads are
independent, so the same kernels run on one key/value head and the query heads that share it, then the
next: those buffers exist for one group at a time (an eighth of them in the Mistral-7B shape).

Each group calls the kernel PyTorch's `scaled_dot_product_attention` would pick for it on CUDA (cuDNN's
on Hopper, else flash-attention 2; anything else and the attention runs whole), or on the CPU its flash
implementation, which the tests run; the backward calls that kernel's own backward with the log-sum-exp
its forward returned, so nothing is recomputed. cuDNN takes a group's key and value heads copied out to its
query heads (an eighth of the copies the fused kernel makes), flash attention reads them as they are; their
gradients are summed over the group, as the fused kernel does. Per group the results are the fused
kernel's on a slice of the heads.

The gradients are written into the inputs' own memory (1.5 hidden-state-sized tensors fewer in the
Mistral-7B shape), and a group's kernel buffers are freed before the next group's run. Once a group's
backward has run nothing reads that group's query, key and value heads again, and in a training step
nothing else holds them: they are the projections' outputs (query and key after RoPE), which neither
the projections' backward (it reads the projection's input) nor RoPE's (it reads cos and sin) needs. Where an input may
still be read its gradient gets memory of its own: a leaf, or a view of a leaf that requires grad (a
parameter, a tensor of the caller's), an input overlapping another input or the incoming gradient, one
with elements repeated (an expanded view), and every input when saved-tensor hooks were active in the
forward. Those hooks (torch.utils.checkpoint's, save_on_cpu) take away autograd's version check, which
guards the rest: the writes go through the inputs' version counter, so a node that saved an input and
runs its backward after this one (no node in a training step does) raises autograd's "modified by an
inplace operation" error instead of reading a gradient as the input.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn.attention import SDPBackend


def heads_per_group(query_heads: int, kv_heads: int) -> int:
    """Query heads that run together: those sharing one key/value head, or 4 without grouped-query
    attention (an eighth of a 32-head model)."""
    if kv_heads < query_heads:
        return query_heads // kv_heads
    return next(size for size in (4, 2, 1) if query_heads % size == 0)


def group_backend(query, key, scale: float) -> SDPBackend:
    """The kernel PyTorch's SDPA picks for one group's shapes (cuDNN's on Hopper where it can)."""
    choice = torch.ops.aten._fused_sdp_choice(query, key, key, None, 0.0, True, scale=scale, enable_gqa=True)
    return SDPBackend(choice)


def _forward(backend: SDPBackend, query, key, value, scale: float) -> tuple[torch.Tensor, tuple[Any, ...]]:
    if backend == SDPBackend.CUDNN_ATTENTION:
        out, lse, cum_q, cum_k, max_q, max_k, seed, offset, _ = (
            torch.ops.aten._scaled_dot_product_cudnn_attention(
                query, key, value, None, True, 0.0, True, False, scale=scale
            )
        )
        return out, (lse, seed, offset, cum_q, cum_k, max_q, max_k)
    if query.is_cuda:
        out, lse, cum_q, cum_k, max_q, max_k, seed, offset, _ = (
            torch.ops.aten._scaled_dot_product_flash_attention(
                query, key, value, 0.0, True, False, scale=scale
            )
        )
        return out, (lse, cum_q, cum_k, max_q, max_k, seed, offset)
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, 0.0, True, scale=scale
    )
    return out, (lse,)


def _backward(backend: SDPBackend, grad, query, key, value, out, saved: tuple[Any, ...], scale: float):
    if backend == SDPBackend.CUDNN_ATTENTION:
        lse, seed, offset, cum_q, cum_k, max_q, max_k = saved
        return torch.ops.aten._scaled_dot_product_cudnn_attention_backward(
            grad,
            query,
            key,
            value,
            out,
            lse,
            seed,
            offset,
            None,
            cum_q,
            cum_k,
            max_q,
            max_k,
            0.0,
            True,
            scale=scale,
        )
    if query.is_cuda:
        lse, cum_q, cum_k, max_q, max_k, seed, offset = saved
        return torch.ops.aten._scaled_dot_product_flash_attention_backward(
            grad,
            query,
            key,
            value,
            out,
            lse,
            cum_q,
            cum_k,
            max_q,
            max_k,
            0.0,
            True,
            seed,
            offset,
            scale=scale,
        )
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
        grad, query, key, value, out, saved[0], 0.0, True, scale=scale
    )


def _group_views(query, key, value, group: int, size: int, kv_per_group: bool, expand: bool):
    """The query heads of `group` and the key/value heads they read (broadcast to them when `expand`)."""
    heads = slice(group * size, (group + 1) * size)
    q = query[:, heads]
    if not kv_per_group:
        return heads, q, key[:, heads], value[:, heads]
    k, v = key[:, group : group + 1], value[:, group : group + 1]
    if expand:
        k, v = k.expand(-1, size, -1, -1).contiguous(), v.expand(-1, size, -1, -1).contiguous()
    return heads, q, k, v


def _byte_span(tensor: torch.Tensor) -> tuple[int, int]:
    """The bytes of its storage a tensor spans, first and past the last."""
    start = tensor.storage_offset() * tensor.element_size()
    if tensor.numel() == 0:
        return start, start
    last = sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride(), strict=True))
    return start, start + (last + 1) * tensor.element_size()


def _overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr():
        return False
    (a_start, a_end), (b_start, b_end) = _byte_span(a), _byte_span(b)
    return a_start < b_end and b_start < a_end


def _gradient_buffer(
    tensor: torch.Tensor, needed: bool, hooked: bool, others: tuple[torch.Tensor, ...]
) -> torch.Tensor | None:
    """Where an input's gradient is written: the input's own memory where nothing reads it after this
    backward (module docstring), else a new tensor; None where autograd does not want it."""
    if not needed:
        return None
    # a view's memory is its base's: a view of a parameter or of the caller's tensor keeps its values (the
    # base of a custom function's view output, e.g. the fused LoRA projections', is its own buffer)
    base = tensor if tensor._base is None else tensor._base
    if (
        hooked
        or tensor.grad_fn is None
        or (base.is_leaf and base.requires_grad)
        or torch._debug_has_internal_overlap(tensor) != 0  # not dense: an element may be written twice
        or any(_overlap(tensor, other) for other in others)  # later groups read the other's elements
    ):
        return torch.empty_like(tensor)
    return tensor.detach()  # the same version counter: a later reader of the input learns of the writes


def _group_backward(ctx, group: int, saved: tuple[Any, ...], inputs, out, grad_out, targets) -> None:
    """One group's gradients, written into its heads of `targets` (None: not wanted)."""
    query, key, value = inputs
    head_range, q, k, v = _group_views(query, key, value, group, ctx.size, ctx.kv_per_group, ctx.expand)
    grad = grad_out[:, :, head_range].transpose(1, 2)
    dq, dk, dv = _backward(
        ctx.backend, grad, q, k, v, out[:, :, head_range].transpose(1, 2), saved, ctx.scale
    )
    kv_heads = head_range
    if ctx.kv_per_group:  # the group's one key/value head, given to each query head when expanded: summed
        kv_heads = slice(group, group + 1)
        dk, dv = (d.sum(1, keepdim=True) if d.shape[1] > 1 else d for d in (dk, dv))
    with torch.no_grad():
        for target, heads, gradient in zip(
            targets, (head_range, kv_heads, kv_heads), (dq, dk, dv), strict=True
        ):
            if target is not None:
                target[:, heads] = gradient


class HeadGroupedAttention(torch.autograd.Function):
    """Causal attention without dropout or a mask, `size` query heads at a time. Inputs are
    (batch, heads, seq, head_dim); the output is (batch, seq, heads, head_dim), as transformers'
    attention functions return it. The backward returns the inputs' own memory as their gradients where
    nothing else can read it (module docstring)."""

    @staticmethod
    def forward(ctx, query, key, value, scale: float, size: int, backend: SDPBackend):
        batch, heads, seq, dim = query.shape
        kv_per_group = key.shape[1] < heads
        # cuDNN's kernels take a group's key and value heads broadcast to its query heads, flash's as they are
        expand = backend == SDPBackend.CUDNN_ATTENTION or not query.is_cuda
        out = query.new_empty(batch, seq, heads, dim)
        saved = []
        for group in range(heads // size):
            head_range, q, k, v = _group_views(query, key, value, group, size, kv_per_group, expand)
            group_out, group_saved = _forward(backend, q, k, v, scale)
            out[:, :, head_range] = group_out.transpose(1, 2)
            saved.append(group_saved)
        ctx.save_for_backward(query, key, value, out)
        ctx.group_saved, ctx.scale, ctx.size, ctx.backend = saved, scale, size, backend
        ctx.kv_per_group, ctx.expand = kv_per_group, expand
        # saved-tensor hooks skip autograd's version check of other nodes' saved copies of the inputs
        ctx.hooked = torch._C._autograd._top_saved_tensors_default_hooks(False) is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):
        # unpacked before any write: the saved inputs' versions are checked here
        query, key, value, out = ctx.saved_tensors
        inputs = (query, key, value)
        targets = tuple(
            _gradient_buffer(tensor, needed, ctx.hooked, (*inputs[:index], *inputs[index + 1 :], grad_out))
            for index, (tensor, needed) in enumerate(zip(inputs, ctx.needs_input_grad[:3], strict=True))
        )
        for group, group_saved in enumerate(ctx.group_saved):
            _group_backward(ctx, group, group_saved, inputs, out, grad_out, targets)
        ctx.group_saved = None
        return (*targets, None, None, None)


SPLIT_BACKENDS = (SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION)


def grouped_causal_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    scale: float,
    backend: SDPBackend | None = None,
) -> torch.Tensor | None:
    """Causal attention of (batch, heads, seq, head_dim) inputs, a group of heads at a time, through
    `backend` (default: the one SDPA picks for a group); returns (batch, seq, heads, head_dim), or None
    where the kernel is neither cuDNN's nor flash attention (the caller runs SDPA whole)."""
    size = heads_per_group(query.shape[1], key.shape[1])
    if backend is None and query.is_cuda:
        kv_heads = 1 if key.shape[1] < query.shape[1] else size
        backend = group_backend(query[:, :size], key[:, :kv_heads], scale)
    backend = backend or SDPBackend.FLASH_ATTENTION
    if backend not in SPLIT_BACKENDS:
        return None
    return HeadGroupedAttention.apply(query, key, value, scale, size, backend)
