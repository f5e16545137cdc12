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
  when k and v have fewer heads (grouped-query attention), and dk, dv.
"""

from __future__ import annotations

from typing import Protocol

from forumtune.config import Config
from forumtune.kernels.lora_linear import DECODER_LAYER_OF_MODEL_TYPE
from forumtune.train.tiled_mlp import tiling_for


class LayerShape(Protocol):  # what plan.ModelShape provides
    hidden: int
    intermediate: int
    q_dim: int
    kv_dim: int
    layers: int
    model_type: str


def tiled_layer_parts(
    shape: LayerShape, tokens: int, tile: int, activation_bytes: int, offload: bool, graphs: bool
) -> dict[str, float]:
    """Bytes of each part of a tiled layer's backward peak (see the module docstring)."""
    a = activation_bytes
    hidden, q, kv = (tokens * width * a for width in (shape.hidden, shape.q_dim, shape.kv_dim))
    mlp_phase = 2 * hidden + tile * (4 * shape.intermediate + 2 * shape.hidden) * a
    expanded_kv = 2 * q if shape.kv_dim < shape.q_dim else 0
    attention_phase = hidden + q + q + 2 * q + expanded_kv + 2 * kv
    in_flight = (2 if graphs else 3) if offload else 1
    parts = {
        "layer inputs and output gradient in flight": hidden * in_flight,
        "attention's saved tensors (norm output, q, k, v, output)": hidden + 2 * q + 2 * kv,
    }
    if mlp_phase >= attention_phase:
        parts[f"MLP backward, one tile of {tile} tokens (+ h1 and its gradient)"] = mlp_phase
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
        graphs = config.train.cuda_graphs and config.train.method == "sft"  # as loading.layer_graphs_for
        offload = checkpointing == "offload"
        return tiled_layer_parts(shape, tokens, tile, activation_bytes, offload=offload, graphs=graphs)
    saved_per_layer = (
        tokens * (7 * shape.hidden + 2 * shape.kv_dim + 3 * shape.intermediate) * activation_bytes
    )
    layer_gradients = tokens * 3 * shape.intermediate * activation_bytes
    layers_kept = 1 if checkpointing else shape.layers
    return {"activations (layers kept for backward)": saved_per_layer * layers_kept + layer_gradients}


def mlp_tile_tokens(
    config: Config, shape: LayerShape, tokens: int, checkpointing: bool | str, fast: bool
) -> int | None:
    """Tokens per MLP tile when training tiles this micro-batch's MLP (train/tiled_mlp.py: the fast path
    with checkpointing, on Llama-style layers), else None."""
    tiling = tiling_for(config.train.tile_mlp)
    if tiling is None or not (fast and checkpointing) or shape.model_type not in DECODER_LAYER_OF_MODEL_TYPE:
        return None
    return tiling.tile_tokens if tiling.applies(tokens) else None
