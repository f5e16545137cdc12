"""liger-kernel's Triton kernels for the model families it knows, on CUDA only."""

from __future__ import annotations

import importlib.util

import torch
from transformers import PreTrainedModel

KERNELS = ("rope", "rms_norm", "swiglu", "fused_linear_cross_entropy")


def liger_available() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("liger_kernel") is not None


def apply_liger_kernels(model: PreTrainedModel) -> list[str]:
    """Patch `model` (before LoRA is attached) with liger's fused RMSNorm, RoPE, SwiGLU and
    linear+cross-entropy; returns the kernels applied, empty when liger or the model type is missing.

    The fused linear+cross-entropy never materialises full-vocabulary logits in training; it needs a
    plain lm_head, so it is left off when the head is trained or wrapped."""
    if not liger_available():
        return []
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    apply = MODEL_TYPE_TO_APPLY_LIGER_FN.get(model.config.model_type)
    if apply is None:
        return []
    fused_loss = type(model.get_output_embeddings()) is torch.nn.Linear
    options = {
        "rope": True,
        "rms_norm": True,
        "swiglu": True,
        "cross_entropy": False,
        "fused_linear_cross_entropy": fused_loss,
    }
    apply(model=model, **options)
    return [name for name in KERNELS if options[name]]
