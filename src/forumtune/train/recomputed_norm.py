"""Long rows: the attention's input norm recomputed in the q, k and v projections' backward, not saved.

A decoder layer's q, k and v projections read the output of `input_layernorm`, and their backward needs it
for the LoRA A gradient, so the fused layers (kernels/lora_linear.py) would save it: one hidden-state-sized
tensor (H, 256 MiB at 32,768 tokens in the Mistral-7B shape) that lives through the layer's whole backward,
beside the MLP's and the attention's buffers at the peak. The layer input the norm reads is kept for the
norm's own backward anyway. On micro-batches whose MLP runs in tiles (train/tiled_mlp.py: the long rows,
where one layer's backward sets the step's peak) the norm's output carries a `RecomputedInput` instead: the
projections keep only the layer input, and the first of their backward passes computes the norm again
from it, for all three. The same kernel on the same input gives the saved values bit for bit; it costs one
norm pass per layer.

That moment, the attention's backward done, is also when the next layer input's copy back from host
memory starts (layer_checkpointing.prefetch_deferred): the MLP's and the attention's backward no longer
hold it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from forumtune.kernels.lora_linear import LAYERS_ENDING_IN_DOWN_PROJ, RECOMPUTED_INPUT, RecomputedInput
from forumtune.train import layer_checkpointing
from forumtune.train.tiled_mlp import MLPTiling


def use_recomputed_attention_norm(model: torch.nn.Module, tiling: MLPTiling) -> int:
    """Recompute the input norm of every Llama-style decoder layer of `model` in its projections' backward,
    on micro-batches that `tiling` tiles; returns how many layers."""
    changed = 0
    for layer in model.modules():
        norm = getattr(layer, "input_layernorm", None)
        if type(layer).__name__ not in LAYERS_ENDING_IN_DOWN_PROJ or norm is None:
            continue
        if hasattr(norm, "_forumtune_saved_forward"):
            continue
        norm._forumtune_saved_forward = norm.forward
        norm.forward = functools.partial(recomputable_norm_forward, norm._forumtune_saved_forward, tiling)
        layer._forumtune_defers_prefetch = tiling.applies
        changed += 1
    return changed


def recomputable_norm_forward(forward: Callable, tiling: MLPTiling, x: torch.Tensor) -> torch.Tensor:
    out = forward(x)
    if torch.is_grad_enabled() and tiling.applies(x.numel() // x.shape[-1]):
        autocast = layer_checkpointing.autocast_state(x.device)
        setattr(out, RECOMPUTED_INPUT, RecomputedInput(functools.partial(_norm_again, forward, autocast), x))
    return out


def _norm_again(forward: Callable, autocast: tuple[bool, torch.dtype], x: torch.Tensor) -> torch.Tensor:
    layer_checkpointing.prefetch_deferred()
    enabled, dtype = autocast
    with torch.autocast(x.device.type, dtype=dtype, enabled=enabled):
        return forward(x)
