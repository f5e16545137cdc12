"""Causal attention run one group of heads at a time, forward and backward (`train.split_attention`).

At long sequences flash attention's backward is the largest part of a checkpointed layer's peak once the
MLP runs in tiles (benchmarks/RESULTS.md §3b): for all heads at once it holds dq, an fp32 accumulator for
dq (two hidden-state-sized tensors), and with grouped-query attention dk and dv expanded to every query
head before they are summed, 5.5 hidden-state-sized tensors beside the gradients it returns. Heads are
independent, so the same kernels run on one key/value head and the query heads that share it, then the
next: those buffers exist for one group at a time (an eighth of them in the Mistral-7B shape).

Each group calls the flash kernel PyTorch ships (on CUDA the flash-attention 2 kernels behind
`scaled_dot_product_attention`; on the CPU its flash implementation, which the tests run), and the
backward calls the kernel's own backward with the log-sum-exp its forward returned, so nothing is
recomputed. Key and value heads are broadcast to their group's query heads as views, not copies, and
their gradients are summed over the group, as the fused kernel does. Per group the results are the
fused kernel's on a slice of the heads: the same floating-point operations in the same order.
"""

from __future__ import annotations

from typing import Any

import torch


def heads_per_group(query_heads: int, kv_heads: int) -> int:
    """Query heads that run together: those sharing one key/value head, or 4 without grouped-query
    attention (an eighth of a 32-head model)."""
    if kv_heads < query_heads:
        return query_heads // kv_heads
    return next(size for size in (4, 2, 1) if query_heads % size == 0)


def _flash_forward(query, key, value, scale: float) -> tuple[torch.Tensor, tuple[Any, ...]]:
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


def _flash_backward(grad, query, key, value, out, saved: tuple[Any, ...], scale: float):
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


def _group_views(query, key, value, group: int, size: int, kv_per_group: bool):
    """The query heads of `group` and the key/value heads they read, broadcast to them as views."""
    heads = slice(group * size, (group + 1) * size)
    q = query[:, heads]
    if kv_per_group:
        k, v = key[:, group : group + 1], value[:, group : group + 1]
        return heads, q, k.expand(-1, size, -1, -1), v.expand(-1, size, -1, -1)
    return heads, q, key[:, heads], value[:, heads]


class HeadGroupedAttention(torch.autograd.Function):
    """Causal attention without dropout or a mask, `size` query heads at a time. Inputs are
    (batch, heads, seq, head_dim); the output is (batch, seq, heads, head_dim), as transformers'
    attention functions return it."""

    @staticmethod
    def forward(ctx, query, key, value, scale: float, size: int):
        batch, heads, seq, dim = query.shape
        kv_per_group = key.shape[1] < heads
        out = query.new_empty(batch, seq, heads, dim)
        saved = []
        for group in range(heads // size):
            head_range, q, k, v = _group_views(query, key, value, group, size, kv_per_group)
            group_out, group_saved = _flash_forward(q, k, v, scale)
            out[:, :, head_range] = group_out.transpose(1, 2)
            saved.append(group_saved)
        ctx.save_for_backward(query, key, value, out)
        ctx.group_saved, ctx.scale, ctx.size, ctx.kv_per_group = saved, scale, size, kv_per_group
        return out

    @staticmethod
    def backward(ctx, grad_out):
        query, key, value, out = ctx.saved_tensors
        grad_query = torch.empty_like(query)
        grad_key, grad_value = torch.empty_like(key), torch.empty_like(value)
        for group, group_saved in enumerate(ctx.group_saved):
            head_range, q, k, v = _group_views(query, key, value, group, ctx.size, ctx.kv_per_group)
            grad = grad_out[:, :, head_range].transpose(1, 2)
            group_out = out[:, :, head_range].transpose(1, 2)
            dq, dk, dv = _flash_backward(grad, q, k, v, group_out, group_saved, ctx.scale)
            grad_query[:, head_range] = dq
            kv_heads = slice(group, group + 1) if ctx.kv_per_group else head_range
            grad_key[:, kv_heads] = dk.sum(1, keepdim=True) if ctx.kv_per_group else dk
            grad_value[:, kv_heads] = dv.sum(1, keepdim=True) if ctx.kv_per_group else dv
        ctx.group_saved = None
        return grad_query, grad_key, grad_value, None, None


def grouped_causal_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float
) -> torch.Tensor:
    """Causal attention of (batch, heads, seq, head_dim) inputs, a group of heads at a time; returns
    (batch, seq, heads, head_dim)."""
    size = heads_per_group(query.shape[1], key.shape[1])
    return HeadGroupedAttention.apply(query, key, value, scale, size)
