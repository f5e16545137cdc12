"""Long micro-batches' attention a group of heads at a time, while training (`train.split_attention`).

The model's attention modules call the attention function its config names. This registers one more
with transformers ("forumtune_sdpa", with SDPA's masks) that runs kernels/grouped_attention.py where
it applies: a pass that builds a graph for the backward, causal, without a mask or dropout, over a
micro-batch of more tokens than the setting's threshold. Everything else (evaluation, generation,
padded batches, short rows) goes to transformers' own SDPA function unchanged.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from forumtune.kernels.grouped_attention import grouped_causal_attention
from forumtune.kernels.lora_linear import DECODER_LAYER_OF_MODEL_TYPE
from forumtune.train.tiled_mlp import AUTO_ABOVE_TOKENS

ATTENTION_NAME = "forumtune_sdpa"
_FLASH_DTYPES = (torch.bfloat16, torch.float16)


def split_above_tokens(setting: str) -> int | None:
    """Micro-batches of more tokens than this split their attention (None: never), for train.split_attention
    once `auto` is settled for the card (train/plan.py settle_split_attention)."""
    if setting == "auto":
        raise ValueError("train.split_attention=auto is settled against the card's memory first")
    return None if setting == "off" else AUTO_ABOVE_TOKENS


def split_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """transformers' attention-function signature; (batch, seq, heads, head_dim) output and no weights."""
    if _splits(module, query, key, attention_mask, dropout, kwargs):
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        out = grouped_causal_attention(query, key, value, scale)
        if out is not None:
            return out, None
    return sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
    )


def _splits(module, query, key, attention_mask, dropout, kwargs) -> bool:
    above = getattr(module, "_forumtune_split_above", None)
    batch, _, seq, _ = query.shape
    causal = kwargs.get("is_causal")
    return (
        above is not None
        and batch * seq > above
        and torch.is_grad_enabled()
        and query.requires_grad
        and attention_mask is None
        and not dropout
        and (causal if causal is not None else getattr(module, "is_causal", True))
        and key.shape[2] == seq
        and (query.dtype in _FLASH_DTYPES or not query.is_cuda)
        and kwargs.get("softcap") is None
    )


def use_split_attention(model: torch.nn.Module, above: int | None) -> int:
    """Point a Llama-style model that runs SDPA at the splitting attention function, for micro-batches of
    more than `above` tokens; returns how many attention modules will split (0: the model is left as it
    was)."""
    config = getattr(model, "config", None)
    if (
        above is None
        or getattr(config, "model_type", None) not in DECODER_LAYER_OF_MODEL_TYPE
        or config._attn_implementation != "sdpa"
    ):
        return 0
    AttentionInterface.register(ATTENTION_NAME, split_attention_forward)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
    split = 0
    for module in model.modules():
        if hasattr(module, "num_key_value_groups") and hasattr(module, "q_proj"):
            module._forumtune_split_above = above
            split += 1
    model.set_attn_implementation(ATTENTION_NAME)
    return split
