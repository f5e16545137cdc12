"""Getting a 4-bit model ready for LoRA training without upcasting it to fp32.

peft's `prepare_model_for_kbit_training` casts every parameter that is not 4-bit (norms, embeddings,
lm_head) to fp32. bitsandbytes' 4-bit layers return their input's dtype, so the whole residual stream,
attention and LoRA then run in fp32: SDPA falls back to its math path with an fp32 S×S score matrix
(45% of a Mistral-7B step at 2×2048 and an 8 GiB tensor at 8,192 tokens on an H100). Keeping those
parameters in the compute dtype and running under autocast gives bf16 activations, as bf16 training
of the unquantized model would have.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel


def prepare_for_qlora(model: PreTrainedModel, *, gradient_checkpointing: bool) -> PreTrainedModel:
    """Freeze the base, keep its dtypes, and enable (non-reentrant) gradient checkpointing."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    if gradient_checkpointing:
        enable_checkpointing(model)
        model.enable_input_require_grads()  # a frozen embedding must still feed a graph to the layers
    return model


def enable_checkpointing(model: PreTrainedModel) -> None:
    options = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x renamed it
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)


def training_autocast(device: torch.device, compute_dtype: torch.dtype) -> torch.autocast:
    """bf16/fp16 matmuls for the fp32 LoRA weights and the rest of the step, on a GPU only."""
    enabled = device.type == "cuda" and compute_dtype in (torch.bfloat16, torch.float16)
    return torch.autocast(device.type, dtype=compute_dtype, enabled=enabled)
