"""safetensors checkpoints read and written tensor by tensor, so no whole model is ever held in memory."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.progress import track
from safetensors import safe_open
from safetensors.torch import save_file

from forumtune.export.errors import ExportError
from forumtune.export.files import read_json

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]i?B)\s*$", re.IGNORECASE)
SIZE_UNITS = {"kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


@dataclass(frozen=True)
class OutTensor:
    """One tensor of a checkpoint being written: its name, shape, dtype and how to compute it when its turn comes."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    compute: Callable[[], torch.Tensor]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class ShardFile:
    """One safetensors file: metadata from a handle kept open, data from a fresh mapping per read.

    A mapping that stays open keeps every page read through it in the process's resident memory, so
    reading a 14 GB checkpoint tensor by tensor would still show 14 GB resident. Unmapping after each
    read leaves those pages to the page cache, which the kernel can reclaim.
    """

    def __init__(self, path: Path, open_files: ExitStack) -> None:
        self.path = path
        self.handle = open_files.enter_context(safe_open(path, framework="pt"))

    def keys(self) -> list[str]:
        return list(self.handle.keys())

    def get_slice(self, name: str) -> Any:
        return self.handle.get_slice(name)

    def get_tensor(self, name: str) -> torch.Tensor:
        with safe_open(self.path, framework="pt") as fresh:
            return fresh.get_tensor(name)


def open_tensors(model_dir: Path, open_files: ExitStack) -> dict[str, ShardFile]:
    """Map every tensor name to the open safetensors file that holds it (single file or sharded)."""
    index_path = model_dir / INDEX_FILE
    if index_path.is_file():
        weight_map: dict[str, str] = read_json(index_path, "the shard index")["weight_map"]
        files = sorted(set(weight_map.values()))
    elif (model_dir / SINGLE_FILE).is_file():
        files = [SINGLE_FILE]
    else:
        raise ExportError(
            f"{model_dir} has no {SINGLE_FILE} or {INDEX_FILE}; pickled .bin checkpoints are not read. "
            "Re-save the model with save_pretrained (it writes safetensors)."
        )
    handles = {}
    for file_name in files:
        shard = ShardFile(model_dir / file_name, open_files)
        handles.update(dict.fromkeys(shard.keys(), shard))
    return handles


def parse_size(size: str) -> int:
    """'2GB' → bytes (decimal units as in Hugging Face's max_shard_size; KiB/MiB/GiB are binary)."""
    match = SIZE.match(size)
    if not match:
        raise ExportError(f"shard size {size!r} is not a size like '2GB' or '500MB' (merge.max_shard_size).")
    return int(float(match.group(1)) * SIZE_UNITS[match.group(2).lower()])


def plan_shards(tensors: list[OutTensor], max_shard_bytes: int) -> list[list[OutTensor]]:
    """Group tensors, in order, into shards of at most `max_shard_bytes` (a bigger tensor gets a shard alone)."""
    shards: list[list[OutTensor]] = [[]]
    filled = 0
    for tensor in tensors:
        if shards[-1] and filled + tensor.nbytes > max_shard_bytes:
            shards.append([])
            filled = 0
        shards[-1].append(tensor)
        filled += tensor.nbytes
    return shards


def shard_file_names(count: int) -> list[str]:
    if count == 1:
        return [SINGLE_FILE]
    return [f"model-{number:05d}-of-{count:05d}.safetensors" for number in range(1, count + 1)]


def write_sharded(tensors: list[OutTensor], out_dir: Path, max_shard_size: str, description: str) -> None:
    """Write the tensors as Hugging Face safetensors shards; only one shard's tensors are in memory at a time."""
    shards = plan_shards(tensors, parse_size(max_shard_size))
    names = shard_file_names(len(shards))
    progress = iter(track(tensors, description=description, transient=True))
    weight_map: dict[str, str] = {}
    for shard, file_name in zip(shards, names):
        computed = {}
        for tensor in shard:
            next(progress)
            computed[tensor.name] = computed_tensor(tensor)
            weight_map[tensor.name] = file_name
        save_file(computed, out_dir / file_name, metadata={"format": "pt"})
        del computed
    next(progress, None)
    if len(shards) > 1:
        index = {"metadata": {"total_size": sum(t.nbytes for t in tensors)}, "weight_map": weight_map}
        (out_dir / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def computed_tensor(tensor: OutTensor) -> torch.Tensor:
    value = tensor.compute().to(tensor.dtype).contiguous()
    if tuple(value.shape) != tensor.shape:
        raise ExportError(
            f"tensor {tensor.name} came out with shape {tuple(value.shape)}, expected {tensor.shape}."
        )
    return value


def tensor_names(handles: Iterable[str]) -> list[str]:
    """Names in the order a reader streams best: embeddings, then layer by layer, then the head."""
    return sorted(handles, key=layer_order)


def layer_order(name: str) -> tuple[int, int, str]:
    if match := re.search(r"\.layers\.(\d+)\.", name):
        return (1, int(match.group(1)), name)
    return (0 if "embed" in name else 2, 0, name)
