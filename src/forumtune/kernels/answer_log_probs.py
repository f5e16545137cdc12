"""Answer tokens' log-probabilities straight from the last hidden states and the output head, in chunks.

The preference losses need log p(token) of each answer token only. Through the model's own head they read
the full [tokens × vocabulary] logits, an fp32 copy, a softmax and their gradient: for Mistral-7B at
1 pair × (2 × 1024) tokens about 875 MiB (`forumtune.train.plan.loss_bytes`). Here only the answer tokens
go through the head, `CHUNK_TOKENS` at a time: each chunk's logits give its logsumexp and the target's
logit (in fp32 whatever the compute dtype) and are freed; the backward computes each chunk's logits again
instead of keeping them. The plain reference is `forumtune.preference_batches.full_logit_log_probs`, which
reads the model's full logits; tests/kernels/test_answer_log_probs.py holds the two equal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Tokens per chunk: 256 × a 32k vocabulary is 8M logits (about 110 MiB with their fp32 copies and softmax
# gradient) and a matmul still large enough to keep a GPU busy.
CHUNK_TOKENS = 256


def compute_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype the head's matmul would run in: autocast's when it is on, else the inputs' own."""
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return torch.promote_types(hidden.dtype, weight.dtype)


def chunk_logits(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor:
    with torch.autocast(hidden.device.type, enabled=False):
        return F.linear(hidden.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype)).float()


class ChunkedAnswerLogProbs(torch.autograd.Function):
    """log softmax(hidden @ weightᵀ + bias)[target] per token, never holding more than one chunk's logits."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_tokens):  # type: ignore[override]
        dtype = compute_dtype(hidden, weight)
        log_probs = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk_tokens):
            end = start + chunk_tokens
            logits = chunk_logits(hidden[start:end], weight, bias, dtype)
            picked = logits.gather(-1, targets[start:end, None]).squeeze(-1)
            log_probs[start:end] = picked - torch.logsumexp(logits, dim=-1)
        ctx.save_for_backward(hidden, weight, bias, targets)
        ctx.dtype, ctx.chunk_tokens = dtype, chunk_tokens
        return log_probs

    @staticmethod
    def backward(ctx, grad_log_probs):  # type: ignore[override]
        hidden, weight, bias, targets = ctx.saved_tensors
        dtype, chunk_tokens = ctx.dtype, ctx.chunk_tokens
        want_hidden, want_weight, want_bias = ctx.needs_input_grad[:3]
        grad_hidden = torch.empty_like(hidden) if want_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if want_weight else None
        grad_bias = torch.zeros_like(bias, dtype=torch.float32) if want_bias else None
        weight_c = weight.to(dtype)
        for start in range(0, hidden.shape[0], chunk_tokens):
            end = start + chunk_tokens
            logits = chunk_logits(hidden[start:end], weight, bias, dtype)
            # d log p[y] / d logits = onehot(y) − softmax(logits), scaled by the incoming gradient
            grad_logits = torch.softmax(logits, dim=-1).neg_()
            grad_logits.scatter_add_(
                -1, targets[start:end, None], torch.ones_like(targets[start:end, None], dtype=torch.float32)
            )
            grad_logits.mul_(grad_log_probs[start:end, None])
            grad_logits_c = grad_logits.to(dtype)
            if want_hidden:
                grad_hidden[start:end] = (grad_logits_c @ weight_c).to(hidden.dtype)
            if want_weight:
                grad_weight += (grad_logits_c.T @ hidden[start:end].to(dtype)).float()
            if want_bias:
                grad_bias += grad_logits.sum(0)
        return (
            grad_hidden,
            None if grad_weight is None else grad_weight.to(weight.dtype),
            None if grad_bias is None else grad_bias.to(bias.dtype),
            None,
            None,
        )


def chunked_answer_log_probs(
    hidden: torch.Tensor,
    head: torch.nn.Linear,
    targets: torch.Tensor,
    chunk_tokens: int | None = None,
) -> torch.Tensor:
    """Per token of `hidden` ([tokens, hidden_size]): log p(target) under the output head `head`, fp32;
    `CHUNK_TOKENS` tokens at a time unless told."""
    chunk = chunk_tokens or CHUNK_TOKENS
    return ChunkedAnswerLogProbs.apply(hidden, head.weight, head.bias, targets, chunk)
