"""The GGUF header's model hyperparameters, read from a Hugging Face config.json (llama.cpp's key names)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from gguf import GGUFWriter, LlamaFileType

from forumtune.export.errors import ExportError

GGUF_ARCH_BY_HF_ARCH: dict[str, str] = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
}
# Architectures whose q/k weights llama.cpp expects permuted to its interleaved rotary layout.
SUPPORTED_ROPE_TYPES = {"default", "linear", "yarn", "llama3"}


def require(config: dict[str, Any], key: str, model_dir: Path) -> Any:
    if key not in config:
        raise ExportError(f"{model_dir / 'config.json'} has no {key!r}; the GGUF header needs it.")
    return config[key]


def gguf_arch_for(config: dict[str, Any], model_dir: Path) -> str:
    architectures = config.get("architectures") or []
    for hf_arch in architectures:
        if hf_arch in GGUF_ARCH_BY_HF_ARCH:
            return GGUF_ARCH_BY_HF_ARCH[hf_arch]
    raise ExportError(
        f"architecture {architectures} in {model_dir / 'config.json'} is not supported by the GGUF exporter; "
        f"supported: {sorted(GGUF_ARCH_BY_HF_ARCH)}. Use llama.cpp's convert_hf_to_gguf.py for other models."
    )


def add_hyperparameters(
    writer: GGUFWriter, config: dict[str, Any], model_dir: Path, file_type: LlamaFileType, name: str
) -> None:
    n_head = require(config, "num_attention_heads", model_dir)
    hidden_size = require(config, "hidden_size", model_dir)
    head_dim = config.get("head_dim") or hidden_size // n_head
    writer.add_type("model")
    writer.add_name(name)
    writer.add_context_length(require(config, "max_position_embeddings", model_dir))
    writer.add_embedding_length(hidden_size)
    writer.add_block_count(require(config, "num_hidden_layers", model_dir))
    writer.add_feed_forward_length(require(config, "intermediate_size", model_dir))
    writer.add_head_count(n_head)
    writer.add_head_count_kv(config.get("num_key_value_heads") or n_head)
    writer.add_layer_norm_rms_eps(require(config, "rms_norm_eps", model_dir))
    writer.add_vocab_size(require(config, "vocab_size", model_dir))
    writer.add_rope_dimension_count(head_dim)
    if config.get("head_dim"):
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    add_rope_parameters(writer, rope_parameters(config), model_dir)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def rope_parameters(config: dict[str, Any]) -> dict[str, Any]:
    """transformers 5 keeps rope settings in `rope_parameters`; older configs use rope_theta + rope_scaling."""
    params = config.get("rope_parameters")
    if params is None:
        params = {"rope_theta": config.get("rope_theta", 10000.0), **(config.get("rope_scaling") or {})}
    params = params.get("full_attention", params)
    rope_type = params.get("rope_type", params.get("type")) or "default"
    return {**params, "rope_type": rope_type}


def add_rope_parameters(writer: GGUFWriter, rope: dict[str, Any], model_dir: Path) -> None:
    rope_type = rope["rope_type"]
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise ExportError(
            f"rope_type {rope_type!r} in {model_dir / 'config.json'} is not supported by the GGUF exporter "
            f"(supported: {sorted(SUPPORTED_ROPE_TYPES)}); use llama.cpp's convert_hf_to_gguf.py."
        )
    writer.add_rope_freq_base(rope.get("rope_theta", 10000.0))
    if rope_type == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(rope["factor"])
    elif rope_type == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(rope["factor"])
        writer.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
    # llama3 scaling is carried by the rope_freqs tensor instead (see llama3_rope_factors).


def llama3_rope_factors(config: dict[str, Any], rope: dict[str, Any]) -> np.ndarray:
    """Per-frequency divisors llama.cpp applies for Llama 3.1-style rope scaling (its rope_freqs tensor)."""
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    base = rope.get("rope_theta", 10000.0)
    factor = rope.get("factor", 8.0)
    low_freq_factor = rope.get("low_freq_factor", 1.0)
    high_freq_factor = rope.get("high_freq_factor", 4.0)
    old_context = rope.get(
        "original_max_position_embeddings", config.get("original_max_position_embeddings", 8192)
    )
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old_context / high_freq_factor:
            factors.append(1.0)
        elif wavelen > old_context / low_freq_factor:
            factors.append(factor)
        else:
            smooth = (old_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(factors, dtype=np.float32)
