"""A saved PEFT LoRA/DoRA adapter read as plain tensors, and the weight update each target module receives."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from forumtune.export.errors import ExportError
from forumtune.export.files import read_json

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
LORA_KEY = re.compile(r"^(.+)\.(lora_A\.weight|lora_B\.weight|lora_magnitude_vector)$")
UNSUPPORTED_KEY = re.compile(r"lora_embedding_|lora_B\.bias|trainable_tokens|lora_[A-Za-z_]+")


@dataclass(frozen=True)
class LoraUpdate:
    """One adapted linear layer: W' = W + scale * B @ A, and with DoRA, rows rescaled to `magnitude`."""

    lora_a: torch.Tensor  # (r, in_features)
    lora_b: torch.Tensor  # (out_features, r)
    scale: float
    magnitude: torch.Tensor | None = None  # (out_features,) for DoRA

    def apply(self, weight: torch.Tensor) -> torch.Tensor:
        """The merged weight, computed in float32 whatever the stored dtypes."""
        merged = weight.to(torch.float32) + self.scale * (self.lora_b.float() @ self.lora_a.float())
        if self.magnitude is not None:
            # peft's DoRA: magnitude / ||W + scale * B A|| per output row (the norm is over in_features).
            merged *= (self.magnitude.float() / torch.linalg.norm(merged, dim=1)).unsqueeze(1)
        return merged


@dataclass(frozen=True)
class Adapter:
    config: dict[str, Any]
    updates: dict[str, LoraUpdate]  # base weight name → its update
    replacements: dict[str, torch.Tensor]  # modules_to_save: base tensor name → the trained tensor

    @property
    def alpha(self) -> float:
        return float(self.config["lora_alpha"])

    @property
    def uses_dora(self) -> bool:
        return bool(self.config.get("use_dora"))


def load_adapter(adapter_dir: Path) -> Adapter:
    check_adapter_dir(adapter_dir)
    config = read_json(adapter_dir / ADAPTER_CONFIG, "the adapter config")
    check_adapter_config(config, adapter_dir)
    weights = load_file(adapter_dir / ADAPTER_WEIGHTS)
    parts: dict[str, dict[str, torch.Tensor]] = {}
    replacements = {}
    for key, tensor in weights.items():
        name = key.removeprefix(PEFT_PREFIX)
        if match := LORA_KEY.match(name):
            parts.setdefault(match.group(1), {})[match.group(2)] = tensor
        elif UNSUPPORTED_KEY.search(name):
            raise ExportError(
                f"adapter {adapter_dir} holds {key!r}, a kind of PEFT weight merge cannot fold in yet "
                "(only LoRA/DoRA on linear layers and modules_to_save are supported)."
            )
        else:
            replacements[name] = tensor
    updates = {
        f"{module}.weight": lora_update(module, found, config, adapter_dir) for module, found in parts.items()
    }
    return Adapter(config, updates, replacements)


def check_adapter_dir(adapter_dir: Path) -> None:
    if not (adapter_dir / ADAPTER_CONFIG).is_file():
        raise ExportError(
            f"adapter directory {adapter_dir} has no {ADAPTER_CONFIG}; pass the directory that "
            "PeftModel.save_pretrained wrote at the end of training (run `forumtune train` first)."
        )
    if not (adapter_dir / ADAPTER_WEIGHTS).is_file():
        raise ExportError(
            f"adapter directory {adapter_dir} has no {ADAPTER_WEIGHTS}; only safetensors adapters are "
            "accepted (re-save the adapter with save_pretrained(..., safe_serialization=True))."
        )


def check_adapter_config(config: dict[str, Any], adapter_dir: Path) -> None:
    if config.get("peft_type", "LORA") != "LORA":
        raise ExportError(
            f"adapter {adapter_dir} is a {config['peft_type']} adapter; merge folds in LoRA/DoRA only."
        )
    if config.get("fan_in_fan_out"):
        raise ExportError(
            f"adapter {adapter_dir} uses fan_in_fan_out (GPT-2 style Conv1D); not supported by merge."
        )


def lora_update(
    module: str, found: dict[str, torch.Tensor], config: dict[str, Any], adapter_dir: Path
) -> LoraUpdate:
    if "lora_A.weight" not in found or "lora_B.weight" not in found:
        raise ExportError(
            f"adapter {adapter_dir} has an incomplete LoRA pair for {module}; re-save the adapter."
        )
    lora_a, lora_b = found["lora_A.weight"], found["lora_B.weight"]
    rank = lora_a.shape[0]
    alpha = float(pattern_value(config.get("alpha_pattern") or {}, module, config["lora_alpha"]))
    scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    return LoraUpdate(lora_a, lora_b, scale, found.get("lora_magnitude_vector"))


def pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    """peft's per-module override: a key matches the module's full name or its trailing dotted part."""
    for pattern, value in patterns.items():
        if re.fullmatch(rf"(.*\.)?{pattern}", module):
            return value
    return default
