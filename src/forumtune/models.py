"""Loading models: the base model (4-bit NF4/FP4 or 8-bit through bitsandbytes, or plain), a trained
adapter on it for inference, and the device they run on.

Training (train/loading.py attaches a trainable adapter), the eval stage and chat all load the base
through here, so it is quantized the same way wherever it runs. Any causal LM that transformers knows
loads the same way (Mistral, Llama 2/3, Qwen2, Gemma, Phi-3 ...), from a local dir or a hub id.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoConfig, AutoModelForCausalLM, BitsAndBytesConfig, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

from forumtune import cpu_layout
from forumtune.base_model import resolve_base_model
from forumtune.config import ModelConfig
from forumtune.errors import ConfigError


def pick_device(requested: str, local_rank: int = 0, *, key: str = "train.device") -> torch.device:
    """`requested` is the value of the config key `key` (auto, cpu or cuda); auto takes a GPU when one is
    visible. `local_rank` picks the GPU of this process in a torchrun launch."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key} is 'cuda' but no CUDA GPU is visible; use {key}=auto or cpu")
    if requested == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def quantization_config(model: ModelConfig, *, shardable: bool = False) -> BitsAndBytesConfig | None:
    """bitsandbytes settings; `shardable` stores 4-bit weights in the compute dtype so FSDP can shard them."""
    compute_dtype = getattr(torch, model.compute_dtype)
    if model.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    if not model.load_in_4bit:
        return None
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=model.quant_type,
        bnb_4bit_use_double_quant=model.double_quant,
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_quant_storage=compute_dtype if shardable else torch.uint8,
    )


def load_base_model(model: ModelConfig, device: torch.device, *, shardable: bool = False) -> PreTrainedModel:
    """The base model on `device`, quantized as model.load_in_4bit / load_in_8bit say."""
    path = resolve_base_model(model.base)
    kwargs = {"dtype": getattr(torch, model.compute_dtype), "attn_implementation": attention_for(path, model)}
    quantization = quantization_config(model, shardable=shardable)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
        kwargs["device_map"] = {"": device.index or 0} if device.type == "cuda" else {"": "cpu"}
    try:
        loaded = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load model.base {model.base!r}: {exc}") from None
    cpu_layout.use_trainable_layout(loaded)  # generation opts into the packed one (forumtune/cpu_layout.py)
    return loaded if quantization is not None else loaded.to(device)


def attention_for(path: str, model: ModelConfig) -> str:
    """model.attn_implementation, or eager where the architecture has no SDPA attention in transformers
    (Gemma-2, whose attention scores are soft-capped, which SDPA cannot do): said once as a warning rather
    than failing the load."""
    if model.attn_implementation != "sdpa":
        return model.attn_implementation
    try:
        config = AutoConfig.from_pretrained(path)
        architecture = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    except (OSError, ValueError, KeyError):  # the load itself reports a model it cannot read
        return model.attn_implementation
    if getattr(architecture, "_supports_sdpa", True):
        return "sdpa"
    warnings.warn(
        f"{architecture.__name__} has no SDPA attention in transformers; it runs its own (eager) attention "
        "instead of model.attn_implementation=sdpa (set model.attn_implementation=eager to silence this)",
        stacklevel=2,
    )
    return "eager"


def load_adapter_model(model: ModelConfig, adapter_dir: Path, device: torch.device) -> PeftModel:
    """A trained adapter on the base as training saw it, for evaluation and chat (not trainable)."""
    base = load_base_model(model, device)
    return PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False)


@contextlib.contextmanager
def adapter_active(model: PeftModel, name: str) -> Iterator[None]:
    """The adapter `name` (loaded beside the model's own) answers inside the block; the one before, after."""
    previous = model.active_adapter
    model.set_adapter(name)
    try:
        yield
    finally:
        model.set_adapter(previous)
