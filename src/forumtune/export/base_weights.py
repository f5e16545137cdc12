"""The base model's weights as plain tensors, one at a time; bitsandbytes 4-bit checkpoints are dequantised.

A pre-quantised checkpoint (e.g. `unsloth/mistral-7b-bnb-4bit`) stores each quantised weight as packed
uint8 plus companions (`.absmax`, `.quant_map`, `.nested_*`, `.quant_state.bitsandbytes__nf4`); the
merge needs the weights the adapter was trained against, which are exactly their dequantised values.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from forumtune.export.errors import ExportError

QUANT_STATE_MARKER = ".quant_state.bitsandbytes__"
QUANT_COMPANIONS = (".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map")


@dataclass(frozen=True)
class BaseTensor:
    name: str
    shape: tuple[int, ...]
    load: Callable[[], torch.Tensor]


def base_tensors(handles: dict[str, Any]) -> dict[str, BaseTensor]:
    """Every logical tensor of the base: plain ones read as stored, 4-bit ones dequantised on load."""
    quantized = {name.split(QUANT_STATE_MARKER)[0] for name in handles if QUANT_STATE_MARKER in name}
    tensors = {}
    for name, handle in handles.items():
        if name in quantized:
            tensors[name] = quantized_tensor(name, handles)
        elif not is_quant_companion(name, quantized):
            shape = tuple(handle.get_slice(name).get_shape())
            tensors[name] = BaseTensor(name, shape, lambda name=name, handle=handle: handle.get_tensor(name))
    return tensors


def is_quant_companion(name: str, quantized: set[str]) -> bool:
    if QUANT_STATE_MARKER in name:
        return True
    return any(name.endswith(suffix) and name[: -len(suffix)] in quantized for suffix in QUANT_COMPANIONS)


def quantized_tensor(name: str, handles: dict[str, Any]) -> BaseTensor:
    state_name = next(key for key in handles if key.startswith(name + QUANT_STATE_MARKER))
    state = json.loads(bytes(handles[state_name].get_tensor(state_name).tolist()).decode())
    return BaseTensor(name, tuple(state["shape"]), lambda: dequantize_4bit(name, handles))


def dequantize_4bit(name: str, handles: dict[str, Any]) -> torch.Tensor:
    try:
        import bitsandbytes.functional as bnb
    except ImportError as error:
        raise ExportError(
            f"the base checkpoint stores {name} in 4-bit; install bitsandbytes to dequantise it for the merge."
        ) from error
    prefix = name + "."
    companions = {
        key[len(prefix) :]: handles[key].get_tensor(key) for key in handles if key.startswith(prefix)
    }
    state = bnb.QuantState.from_dict(companions, device=torch.device("cpu"))
    packed = handles[name].get_tensor(name)
    return bnb.dequantize_4bit(packed, state).to(torch.float32)
