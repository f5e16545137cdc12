"""The decoder layers' part of the memory planner's (plan.py) backward peak: every layer's activations
without checkpointing, one layer's recompute + backward with it (`layer_parts`). The untiled terms are
calibrated against measured peaks (benchmarks/RESULTS.md §3); when the MLP runs in tiles
(`train.tile_mlp`, train/tiled_mlp.py) the layer's peak is itemised part by part (`tiled_layer_parts`).

Itemised from the training step's code in hidden-state-sized tensors (tokens × hidden × 2 bytes on the
fast path, "H" below). The same itemisation of the untiled layer, as it ran before the two releases
below, puts its peak at 26.5 H with the CUDA graphs' two static buffers, where a fit to the peaks
measured then at 2×2048, 1×8192 and 1×16384 gives 26.75 H + 244 MiB (benchmarks/RESULTS.md §3b has the
whole accounting):

- in flight: the next layer's input already on its way back from the host, the gradient arriving from
  the layer above, and (without CUDA graphs, which copy it into their own buffer and free it) the layer's
  own input fetched back (2 H with offloaded checkpoints and graphs, 3 H without graphs; 1 H when the
  inputs are kept on the GPU, where `checkpointed layer inputs` counts them);
- attention's saved tensors, which live through the whole backward: the norm's output, q, k, v and the
  attention output (3.5 H in the Mistral-7B shape);
- then the larger of the two phases of the backward (the layer's recomputed output is freed before it
  starts: layer_checkpointing.release_unread_outputs):
  MLP (first): the attention's sum h1 (the tiles' input), the MLP's input gradient, and one tile's gate,
  up, SwiGLU output, its gradient and two tile-sized hidden tensors;
  attention (after): h1's gradient, the attention output's gradient, and flash-attention 2's backward
  buffers as PyTorch ships them: dq, an fp32 dq accumulator (2 H), dk and dv expanded to every query head
  when k and v have fewer heads (grouped-query attention), and dk, dv. With `train.split_attention` the
  kernel runs a group of heads at a time (kernels/grouped_attention.py): dq, dk and dv written into q, k and
  v as each group finishes with them, and for one group its accumulator, its dq, expanded dk and dv, and its slices of the output and the output's
  gradient made contiguous for the kernel (7 query-sized tensors over the number of groups).
"""

from __future__ import annotations

from typing import Protocol

from forumtune.config import Config
from forumtune.kernels.grouped_attention import heads_per_group
from forumtune.kernels.lora_linear import DECODER_LAYER_OF_MODEL_TYPE
from forumtune.train.split_attention import split_above_tokens
from forumtune.train.tiled_mlp import tiling_for


class LayerShape(Protocol):  # what plan.ModelShape provides
    hidden: int
    intermediate: int
    q_dim: int
    kv_dim: int
    head_dim: int
    layers: int
    model_type: str


def tiled_layer_parts(
    shape: LayerShape,
    tokens: int,
    tile: int,
    activation_bytes: int,
    offload: bool,
    graphs: bool,
    attention_groups: int = 1,
) -> dict[str, float]:
    """Bytes of each part of a tiled layer's backward peak (see the module docstring); `attention_groups`:
    how many groups of heads the attention's backward runs in (1: all at once)."""
    a = activation_bytes
    hidden, q, kv = (tokens * width * a for width in (shape.hidden, shape.q_dim, shape.kv_dim))
    mlp_phase = 2 * hidden + tile * (4 * shape.intermediate + 2 * shape.hidden) * a
    gradients = hidden + q  # h1's and the attention output's
    if attention_groups > 1:  # dq, dk and dv are written into q, k and v
        attention_phase = gradients + 7 * q / attention_groups
    else:
        attention_phase = gradients + q + 2 * kv + 2 * q + (2 * q if shape.kv_dim < shape.q_dim else 0)
    in_flight = (2 if graphs else 3) if offload else 1
    # without graphs the next layer input's copy back waits for the projections' backward (recomputed_norm)
    in_flight_before = in_flight - 1 if offload and not graphs else in_flight
    saved = 2 * q + 2 * kv
    projections_phase = q + 2 * kv + 4 * hidden
    if hidden * in_flight + projections_phase > hidden * in_flight_before + saved + max(
        mlp_phase, attention_phase
    ):
        return {
            "layer inputs and output gradient in flight": hidden * in_flight,
            "q, k and v projections' backward (their gradients, h1's, the norm recomputed, the input's)": (
                projections_phase
            ),
        }
    parts = {
        "layer inputs and output gradient in flight": hidden * in_flight_before,
        "attention's saved tensors (q, k, v, output)": saved,
    }
    if mlp_phase >= attention_phase:
        parts[f"MLP backward, one tile of {tile} tokens (+ h1 and its gradient)"] = mlp_phase
    elif attention_groups > 1:
        parts[f"attention backward, {attention_groups} groups of heads in turn (train.split_attention)"] = (
            attention_phase
        )
    else:
        parts["attention backward (gradients, flash-attention buffers)"] = attention_phase
    return parts


def layer_parts(
    config: Config,
    shape: LayerShape,
    tokens: int,
    checkpointing: bool | str,
    activation_bytes: int,
    fast: bool,
) -> dict[str, float]:
    """The decoder layers' part of the backward's peak: every layer's activations without checkpointing,
    one layer's recompute + backward with it, itemised when its MLP runs in tiles (train.tile_mlp)."""
    tile = mlp_tile_tokens(config, shape, tokens, checkpointing, fast)
    if tile is not None:
        graphs = (
            config.train.cuda_graphs is True and config.train.method == "sft"
        )  # as loading.layer_graphs_for
        offload = checkpointing == "offload"
        groups = attention_groups(config, shape, tokens)
        return tiled_layer_parts(
            shape, tokens, tile, activation_bytes, offload=offload, graphs=graphs, attention_groups=groups
        )
    saved_per_layer = (
        tokens * (7 * shape.hidden + 2 * shape.kv_dim + 3 * shape.intermediate) * activation_bytes
    )
    layer_gradients = tokens * 3 * shape.intermediate * activation_bytes
    layers_kept = 1 if checkpointing else shape.layers
    return {"activations (layers kept for backward)": saved_per_layer * layers_kept + layer_gradients}


def attention_groups(config: Config, shape: LayerShape, tokens: int) -> int:
    """How many groups of heads a tiled layer's attention backward runs in (train.split_attention)."""
    above = split_above_tokens(config.train.split_attention)
    if above is None or tokens <= above or config.model.attn_implementation != "sdpa":
        return 1
    query_heads, kv_heads = shape.q_dim // shape.head_dim, shape.kv_dim // shape.head_dim
    return query_heads // heads_per_group(query_heads, kv_heads)


def mlp_tile_tokens(
    config: Config, shape: LayerShape, tokens: int, checkpointing: bool | str, fast: bool
) -> int | None:
    """Tokens per MLP tile when training tiles this micro-batch's MLP (train/tiled_mlp.py: the fast path
    with checkpointing, on Llama-style layers), else None."""
    tiling = tiling_for(config.train.tile_mlp, split_attention=config.train.split_attention == "on")
    if tiling is None or not (fast and checkpointing) or shape.model_type not in DECODER_LAYER_OF_MODEL_TYPE:
        return None
    return tiling.tile_for(tokens) if tiling.applies(tokens) else None
