"""liger-kernel's Triton kernels for the model families it knows, on CUDA only."""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable

import torch
from transformers import PreTrainedModel

# the MLP's fused kernel under the name each family's patch function takes: SwiGLU for Llama, Mistral
# and Qwen2; GeGLU for Gemma, whose patch functions have no `swiglu` argument and fail on one
MLP_KERNELS = ("swiglu", "geglu")


def liger_available() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("liger_kernel") is not None


def liger_options(apply: Callable[..., None], fused_loss: bool) -> dict[str, bool]:
    """The keyword arguments for one of liger's `apply_liger_kernel_to_<family>` functions: every kernel it
    offers among RoPE, RMSNorm, the MLP's gated activation and linear+cross-entropy."""
    accepted = inspect.signature(apply).parameters
    wanted = {
        "rope": True,
        "rms_norm": True,
        "cross_entropy": False,
        "fused_linear_cross_entropy": fused_loss,
    }
    wanted.update(dict.fromkeys(MLP_KERNELS, True))
    return {name: value for name, value in wanted.items() if name in accepted}


def apply_liger_kernels(model: PreTrainedModel) -> list[str]:
    """Patch `model` (before LoRA is attached) with liger's fused RMSNorm, RoPE, gated MLP activation and
    linear+cross-entropy; returns the kernels applied, empty when liger or the model type is missing.

    The fused linear+cross-entropy never materialises full-vocabulary logits in training; it needs a
    plain lm_head, so it is left off when the head is trained or wrapped."""
    if not liger_available():
        return []
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    apply = MODEL_TYPE_TO_APPLY_LIGER_FN.get(model.config.model_type)
    if apply is None:
        return []
    options = liger_options(apply, fused_loss=type(model.get_output_embeddings()) is torch.nn.Linear)
    apply(model=model, **options)
    return [name for name, value in options.items() if value]
