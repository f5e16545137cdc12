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


class HeadGroupedAttention(torch.autograd.Function):
    """Causal attention without dropout or a mask, `size` query heads at a time. Inputs are
    (batch, heads, seq, head_dim); the output is (batch, seq, heads, head_dim), as transformers'
    attention functions return it."""

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
        return out

    @staticmethod
    def backward(ctx, grad_out):
        query, key, value, out = ctx.saved_tensors
        grad_query = torch.empty_like(query)
        grad_key, grad_value = torch.empty_like(key), torch.empty_like(value)
        for group, group_saved in enumerate(ctx.group_saved):
            head_range, q, k, v = _group_views(
                query, key, value, group, ctx.size, ctx.kv_per_group, ctx.expand
            )
            grad = grad_out[:, :, head_range].transpose(1, 2)
            group_out = out[:, :, head_range].transpose(1, 2)
            dq, dk, dv = _backward(ctx.backend, grad, q, k, v, group_out, group_saved, ctx.scale)
            grad_query[:, head_range] = dq
            kv_heads = slice(group, group + 1) if ctx.kv_per_group else head_range
            grad_key[:, kv_heads] = dk.sum(1, keepdim=True) if dk.shape[1] > 1 and ctx.kv_per_group else dk
            grad_value[:, kv_heads] = dv.sum(1, keepdim=True) if dv.shape[1] > 1 and ctx.kv_per_group else dv
        ctx.group_saved = None
        return grad_query, grad_key, grad_value, None, None, None


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
