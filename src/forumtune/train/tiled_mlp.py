"""A decoder layer's MLP, with the RMSNorm before it, run a tile of tokens at a time (`train.tile_mlp`).

At long sequences the MLP's intermediate tensors are most of a checkpointed layer's memory. In the
Mistral-7B shape gate, up and their SwiGLU product are tokens × 14,336 each, 3.5 times the layer's hidden
states (448 MiB each at 16,384 tokens), and a layer's recompute + backward holds all three and their
gradient at once: 14 hidden-state-sized tensors, 1.75 GiB at 16k, 3.5 GiB at 32k (benchmarks/RESULTS.md
§3b). Every operation of the norm and the MLP works token by token, so they can run on slices of the
sequence. The forward computes the output a tile at a time, so nothing of the MLP outlives one tile. The
backward recomputes each tile with gradients and back-propagates it at once: it writes the tile's slice
of the input gradient and adds the tile's LoRA gradients, in fp32, before it starts the next tile. The
kernels are the same, on row slices; only the order in which the LoRA gradients are summed changes.

The norm runs inside the tile too: otherwise its full-length output, one hidden-state-sized tensor, would
be saved for the backward. `post_attention_layernorm` becomes the identity and the MLP applies it tile by
tile. The modules, their parameters and the adapter's format stay as they were.

When a checkpointed layer is recomputed for its backward, the MLP's output is not computed at all. The
layer's result (`residual + mlp(...)`) feeds nothing there (kernels/lora_linear.py), so a placeholder
stands in for the output and the MLP's backward recomputes the tiles it needs. The layers this applies to
are those in `lora_linear.LAYERS_ENDING_IN_DOWN_PROJ`, the only ones that get tiled. LoRA dropout draws
its masks tile by tile. In that recompute the MLP's backward runs right after the layer's forward, with
the random state the forward's MLP started from (layer_checkpointing restores it), so the masks agree.
Anywhere else the forward keeps the random state and the backward restores it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from forumtune.kernels.lora_linear import (
    LAYERS_ENDING_IN_DOWN_PROJ,
    accumulable,
    is_recomputing,
    recomputing_for_backward,
)

# `train.tile_mlp: auto` tiles micro-batches of more than AUTO_ABOVE_TOKENS tokens, in tiles of 4096 tokens, or
# of a sixteenth of the micro-batch (at least 2048) when attention runs a group of heads at a time. Shorter
# micro-batches fit an 8 GB card untiled (1×8192: 7.46 GiB, RESULTS.md §3a) and run as before. Once the MLP
# is tiled, a layer's peak is its attention backward (RESULTS.md §3b), so a 4096-token tile costs no peak
# memory at 16k tokens and more, and re-dequantizes the three MLP weights (about 60 µs each on an H100) half
# as often as 2048-token tiles would. With attention split (train.split_attention) its backward holds about
# 2.9 hidden-state-sized tensors (its gradients written into q, k and v) against the MLP's 2 plus one tile,
# and a sixteenth of the tokens keeps the tile (16 bytes × the intermediate size per token in the
# Mistral-7B shape, 1 hidden-state-sized tensor) about level with it.
AUTO_TILE_TOKENS = (2048, 4096)
AUTO_ABOVE_TOKENS = 8192
TILE_MULTIPLE = 256
SPLIT_ATTENTION_TILE_SHARE = 16


@dataclass(frozen=True)
class MLPTiling:
    tile_tokens: int  # tokens per tile (auto: the most)
    above_tokens: int  # micro-batches with more tokens than this are tiled; the rest run as before
    skip_unread_outputs: bool = True  # False: compute the output in the recompute too (tests compare)
    fewest_tile_tokens: int | None = None  # auto: a sixteenth of the micro-batch, at least this many tokens

    def applies(self, tokens: int) -> bool:
        return tokens > max(self.above_tokens, self.tile_tokens if self.fewest_tile_tokens is None else 0)

    def tile_for(self, tokens: int) -> int:
        """Tokens per tile for a micro-batch of `tokens` tokens."""
        if self.fewest_tile_tokens is None:
            return self.tile_tokens
        share = tokens // SPLIT_ATTENTION_TILE_SHARE // TILE_MULTIPLE * TILE_MULTIPLE
        return max(self.fewest_tile_tokens, min(self.tile_tokens, share))


def tiling_for(setting: str | int, split_attention: bool = False) -> MLPTiling | None:
    """The tiling `train.tile_mlp` asks for: None for off; auto (smaller tiles when attention is split);
    or tiles of that many tokens."""
    if setting == "off":
        return None
    if setting == "auto":
        fewest, most = AUTO_TILE_TOKENS
        return MLPTiling(most, AUTO_ABOVE_TOKENS, fewest_tile_tokens=fewest if split_attention else None)
    return MLPTiling(int(setting), int(setting))


def use_tiled_mlp(model: torch.nn.Module, tiling: MLPTiling) -> int:
    """Give the MLP of every Llama-style decoder layer of `model` the tiled forward, with the norm before
    it folded in; returns how many layers."""
    tiled = 0
    for layer in model.modules():
        if type(layer).__name__ not in LAYERS_ENDING_IN_DOWN_PROJ:
            continue
        mlp, norm = getattr(layer, "mlp", None), getattr(layer, "post_attention_layernorm", None)
        if mlp is None or norm is None or hasattr(mlp, "_forumtune_untiled_forward"):
            continue
        mlp._forumtune_untiled_forward, norm._forumtune_untiled_forward = mlp.forward, norm.forward
        mlp.forward = functools.partial(tiled_forward, mlp, norm, tiling)
        norm.forward = _passes_through
        tiled += 1
    return tiled


def _passes_through(hidden_states: torch.Tensor) -> torch.Tensor:
    return hidden_states


def tiled_forward(
    mlp: torch.nn.Module, norm: torch.nn.Module, tiling: MLPTiling, x: torch.Tensor
) -> torch.Tensor:
    """`mlp.forward` of a tiled layer: mlp(norm(x)), in tiles when the micro-batch is long enough."""
    run = functools.partial(_norm_then_mlp, norm._forumtune_untiled_forward, mlp._forumtune_untiled_forward)
    if not tiling.applies(x.numel() // x.shape[-1]):
        return run(x)
    params = [p for module in (norm, mlp) for p in module.parameters() if p.requires_grad]
    unread = tiling.skip_unread_outputs and is_recomputing() and torch.is_grad_enabled()
    keep_rng = torch.is_grad_enabled() and not unread
    tile = tiling.tile_for(x.numel() // x.shape[-1])
    return TiledMLP.apply(run, tile, unread, keep_rng, x, *params)


def _norm_then_mlp(norm_forward: Callable, mlp_forward: Callable, x: torch.Tensor) -> torch.Tensor:
    return mlp_forward(norm_forward(x))


class TiledMLP(torch.autograd.Function):
    """y = run(x) computed `tile` rows at a time; the backward recomputes each tile with gradients."""

    @staticmethod
    def forward(
        ctx,
        run: Callable[[torch.Tensor], torch.Tensor],
        tile: int,
        unread: bool,
        keep_rng: bool,
        x: torch.Tensor,
        *params: torch.nn.Parameter,
    ) -> torch.Tensor:
        """`unread`: only the backward is wanted (a recompute): return a placeholder, compute nothing.
        `keep_rng`: the backward comes later: keep the random state to replay the dropout masks."""
        ctx.run, ctx.tile, ctx.params = run, tile, params
        ctx.autocast = (torch.is_autocast_enabled(x.device.type), torch.get_autocast_dtype(x.device.type))
        ctx.rng = _rng_state(x.device) if keep_rng else None
        ctx.save_for_backward(x)
        if unread:
            return x.new_zeros(()).expand(x.shape)
        rows = x.reshape(-1, x.shape[-1])
        out = None
        for start in range(0, rows.shape[0], tile):
            piece = run(rows[start : start + tile])
            if out is None:
                out = piece.new_empty((rows.shape[0], piece.shape[-1]))
            out[start : start + tile] = piece
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[Any, ...]:
        (x,) = ctx.saved_tensors
        need_x = ctx.needs_input_grad[4]
        wanted = [p for p, need in zip(ctx.params, ctx.needs_input_grad[5:], strict=True) if need]
        rows = x.detach().reshape(-1, x.shape[-1])
        grad_rows = grad_out.reshape(-1, grad_out.shape[-1])
        grad_x = torch.empty_like(rows) if need_x else None
        sums: list[torch.Tensor | None] = [None] * len(wanted)
        enabled, dtype = ctx.autocast
        with contextlib.ExitStack() as stack:
            if ctx.rng is not None:
                stack.enter_context(_replaying(x.device, ctx.rng))
            stack.enter_context(torch.enable_grad())
            # no cast cache: inside a CUDA graph's capture it would outlive the replay (as layer_graphs does)
            autocast = torch.autocast(x.device.type, dtype=dtype, enabled=enabled, cache_enabled=False)
            stack.enter_context(autocast)
            stack.enter_context(recomputing_for_backward())
            for start in range(0, rows.shape[0], ctx.tile):
                piece = rows[start : start + ctx.tile].detach().requires_grad_(need_x)
                out = ctx.run(piece)
                inputs = [piece, *wanted] if need_x else wanted
                grads = torch.autograd.grad(
                    out, inputs, grad_rows[start : start + ctx.tile].to(out.dtype), allow_unused=True
                )
                if need_x:
                    grad_x[start : start + ctx.tile] = grads[0]
                    grads = grads[1:]
                for index, grad in enumerate(grads):
                    if grad is not None:
                        total = sums[index]
                        sums[index] = grad.float() if total is None else total.add_(grad)
        by_param = iter(sums)
        param_grads = [
            _as_param(next(by_param), p) if need else None
            for p, need in zip(ctx.params, ctx.needs_input_grad[5:], strict=True)
        ]
        ctx.run = ctx.params = None
        return (None, None, None, None, accumulable(grad_x.view(x.shape)) if need_x else None, *param_grads)


def _as_param(grad: torch.Tensor | None, param: torch.nn.Parameter) -> torch.Tensor | None:
    return None if grad is None else grad.to(param.dtype)


def _rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


@contextlib.contextmanager
def _replaying(device: torch.device, state: tuple[torch.Tensor, torch.Tensor | None]):
    cpu_state, device_state = state
    with torch.random.fork_rng(devices=[device] if device_state is not None else []):
        torch.set_rng_state(cpu_state)
        if device_state is not None:
            torch.cuda.set_rng_state(device_state, device)
        yield
