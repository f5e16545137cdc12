"""Loading the base model (4-bit NF4 through bitsandbytes, or plain) and attaching LoRA adapters."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, PreTrainedModel

from forumtune.base_model import resolve_base_model
from forumtune.config import Config, LoraConfig, ModelConfig
from forumtune.errors import TrainError


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise TrainError("train.device is 'cuda' but no CUDA GPU is visible; use train.device=auto or cpu")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def quantization_config(model: ModelConfig) -> BitsAndBytesConfig | None:
    if not model.load_in_4bit:
        return None
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=model.quant_type,
        bnb_4bit_use_double_quant=model.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, model.compute_dtype),
    )


def load_base_model(model: ModelConfig, device: torch.device, *, quantized: bool | None = None) -> PreTrainedModel:
    """The base model on `device`; quantized to 4-bit when model.load_in_4bit (or `quantized`) says so."""
    quantize = model.load_in_4bit if quantized is None else quantized
    path = resolve_base_model(model.base)
    kwargs = {"dtype": getattr(torch, model.compute_dtype), "attn_implementation": model.attn_implementation}
    if quantize:
        kwargs["quantization_config"] = quantization_config(model.model_copy(update={"load_in_4bit": True}))
        kwargs["device_map"] = {"": device.index or 0} if device.type == "cuda" else {"": "cpu"}
    try:
        loaded = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise TrainError(f"cannot load model.base {model.base!r}: {exc}") from None
    return loaded if quantize else loaded.to(device)


def attach_lora(model: PreTrainedModel, lora: LoraConfig, *, gradient_checkpointing: bool) -> PeftModel:
    if getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    peft_config = PeftLoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules,
        modules_to_save=lora.modules_to_save, task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_config)


def load_for_training(config: Config, device: torch.device) -> PeftModel:
    base = load_base_model(config.model, device)
    base.config.use_cache = False
    return attach_lora(base, config.lora, gradient_checkpointing=config.train.gradient_checkpointing)


def load_adapter_model(config: Config, adapter_dir: Path, device: torch.device) -> PeftModel:
    """The trained adapter on the base as training saw it, for evaluation and chat."""
    base = load_base_model(config.model, device)
    return PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False)
