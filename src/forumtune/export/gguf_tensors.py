"""Which tensors a GGUF holds: Hugging Face → llama.cpp names, the rotary q/k permutation, storage types."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType

from forumtune.export.checkpoint import open_tensors
from forumtune.export.errors import ExportError
from forumtune.export.gguf_hparams import llama3_rope_factors, require, rope_parameters

PERMUTED_QK_ARCHS = {"llama"}
TOP_LEVEL_TENSORS = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
BLOCK_TENSORS = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}
BLOCK_TENSOR_NAME = re.compile(r"^model\.layers\.(\d+)\.(.+)\.(weight|bias)$")
TOP_LEVEL_TENSOR_NAME = re.compile(r"^(.+)\.(weight|bias)$")
IGNORED_TENSOR_SUFFIXES = ("rotary_emb.inv_freq",)


@dataclass(frozen=True)
class TensorPlan:
    """One tensor of the output file: its GGUF name, shape, storage type and how to produce its data."""

    name: str
    shape: tuple[int, ...]
    qtype: GGMLQuantizationType
    load: Callable[[], np.ndarray]

    @property
    def nbytes(self) -> int:
        block_size, type_size = gguf.GGML_QUANT_SIZES[self.qtype]
        return math.prod(self.shape) // block_size * type_size


def plan_tensors(
    model_dir: Path, config: dict[str, Any], arch: str, target: GGMLQuantizationType, open_files: ExitStack
) -> list[TensorPlan]:
    plans = []
    for hf_name, handle in open_tensors(model_dir, open_files).items():
        if hf_name.endswith(IGNORED_TENSOR_SUFFIXES):
            continue
        if hf_name.startswith("lm_head.") and config.get("tie_word_embeddings", False):
            continue  # tied: llama.cpp reuses token_embd when the output tensor is absent
        name = gguf_tensor_name(hf_name, model_dir)
        shape = tuple(handle.get_slice(hf_name).get_shape())
        n_heads = rotary_heads(hf_name, config) if arch in PERMUTED_QK_ARCHS else None
        load = tensor_loader(handle, hf_name, n_heads)
        plans.append(TensorPlan(name, shape, tensor_qtype(name, shape, target), load))
    check_no_tensor_missing({plan.name for plan in plans}, config, model_dir)
    rope = rope_parameters(config)
    if rope["rope_type"] == "llama3":
        factors = llama3_rope_factors(config, rope)
        plans.append(
            TensorPlan("rope_freqs.weight", factors.shape, GGMLQuantizationType.F32, lambda: factors)
        )
    return sorted(plans, key=tensor_order)


def check_no_tensor_missing(names: set[str], config: dict[str, Any], model_dir: Path) -> None:
    """llama.cpp would fail to load (or, for a missing output, silently reuse token_embd): catch it here."""
    expected = {"token_embd.weight", "output_norm.weight"}
    if not config.get("tie_word_embeddings", False):
        expected.add("output.weight")
    for block in range(require(config, "num_hidden_layers", model_dir)):
        expected.update(f"blk.{block}.{name}.weight" for name in BLOCK_TENSORS.values())
    if missing := sorted(expected - names):
        raise ExportError(
            f"{model_dir} lacks {len(missing)} tensor(s) the GGUF needs, e.g. {missing[:3]}; "
            "the checkpoint is incomplete or a shard is missing. Re-run `forumtune merge`."
        )


def gguf_tensor_name(hf_name: str, model_dir: Path) -> str:
    if block_match := BLOCK_TENSOR_NAME.match(hf_name):
        block, module, kind = block_match.groups()
        if module in BLOCK_TENSORS:
            return f"blk.{block}.{BLOCK_TENSORS[module]}.{kind}"
    elif (top_match := TOP_LEVEL_TENSOR_NAME.match(hf_name)) and top_match.group(1) in TOP_LEVEL_TENSORS:
        return f"{TOP_LEVEL_TENSORS[top_match.group(1)]}.{top_match.group(2)}"
    raise ExportError(
        f"tensor {hf_name!r} in {model_dir} has no GGUF counterpart; the checkpoint does not look like a plain "
        "Llama/Mistral/Qwen2 model (was the adapter merged with merge_adapter?)."
    )


def rotary_heads(hf_name: str, config: dict[str, Any]) -> int | None:
    if ".self_attn.q_proj." in hf_name:
        return config["num_attention_heads"]
    if ".self_attn.k_proj." in hf_name:
        return config.get("num_key_value_heads") or config["num_attention_heads"]
    return None


def permute_for_ggml_rotary(weights: np.ndarray, n_heads: int) -> np.ndarray:
    """Reorder q/k rows from HF's rotate-half layout (pairs i, i + d/2) to GGML's adjacent pairs (2i, 2i + 1)."""
    rows = weights.shape[0]
    if rows % (2 * n_heads):
        raise ExportError(f"q/k projection with {rows} rows cannot be split into {n_heads} rotary heads.")
    per_head = weights.reshape(n_heads, 2, rows // n_heads // 2, *weights.shape[1:])
    return per_head.swapaxes(1, 2).reshape(weights.shape)


def tensor_loader(handle: Any, hf_name: str, n_heads: int | None) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        data = handle.get_tensor(hf_name).to(torch.float32).numpy()
        return permute_for_ggml_rotary(data, n_heads) if n_heads else data

    return load


def tensor_qtype(name: str, shape: tuple[int, ...], target: GGMLQuantizationType) -> GGMLQuantizationType:
    """llama.cpp's rule: norms and other 1-D tensors stay F32; Q8_0 needs rows of whole 32-value blocks."""
    if len(shape) <= 1 or name.endswith("_norm.weight"):
        return GGMLQuantizationType.F32
    block_size, _ = gguf.GGML_QUANT_SIZES[target]
    if shape[-1] % block_size:
        return GGMLQuantizationType.F16
    return target


def tensor_order(plan: TensorPlan) -> tuple[int, int, str]:
    if plan.name.startswith("blk."):
        return (1, int(plan.name.split(".")[1]), plan.name)
    if plan.name.startswith(("token_embd", "rope_freqs")):
        return (0, 0, plan.name)
    return (2, 0, plan.name)


def encode_tensor(data: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    return gguf.quants.quantize(np.ascontiguousarray(data, dtype=np.float32), qtype)
