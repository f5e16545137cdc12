"""The input embedding table in host memory while training (`train.embeddings_on_host`).

LoRA never trains the input embedding, and its forward is a gather: one row of a vocab × hidden table per
token. On the GPU the table holds vocab × hidden × 2 bytes all run long (0.25 GiB in the Mistral-7B shape,
0.98 GiB in Llama-3.1-8B's with its 128,256 tokens, 1.09 GiB in Qwen2.5-7B's); the rows one micro-batch
reads are tokens × hidden × 2 bytes (32 MiB at 2×2048). So the table moves to host memory, the rows are
gathered there, on the CPU, into pinned memory, and copied to the GPU without waiting for it. The table
itself stays in pageable memory: only the CPU reads it, and pinning it would lock (and round up to a power
of two) a gigabyte of the host's RAM for nothing.

The gather needs the token ids on the host, where training collates them: `stage` gathers a prepared
micro-batch's rows while the GPU still runs the step before (train/loop.py prepare_step) and files them
under the device tensor of ids the model is called with, so the embedding's forward only queues the copy.
Ids with nothing staged (the eval-loss pass collates straight onto the GPU) are copied back first: a wait
for the GPU, which that pass makes once per batch anyway.

Only the training model's table moves (the eval, merge and chat stages load the model afresh), and not
when the output head reads the same table (tied embeddings: SmolLM2, Gemma), when the embedding trains
(lora.modules_to_save or target_modules name it), or under torchrun (DDP and FSDP want every parameter on
the GPU).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from forumtune.config import Config
from forumtune.errors import TrainError

HOST = torch.device("cpu")
# names transformers gives the input embedding of the families forumtune trains
EMBEDDING_NAMES = ("embed_tokens", "wte", "word_embeddings", "embed_in")


def wanted(setting: str | bool, *, device: torch.device, fast_path: bool, distributed: bool) -> bool:
    """Whether `train.embeddings_on_host` asks for the host table on this run: auto on the GPU fast path
    in one process; true anywhere (`move_if_wanted` refuses it under torchrun); false never."""
    if setting == "auto":
        return device.type == "cuda" and fast_path and not distributed
    return bool(setting)


def planned(config: Config, *, tied: bool) -> bool:
    """Whether a training of `config` on one GPU keeps the table on the host (the memory planner's view):
    auto follows the fast path; a tied or trained embedding stays on the GPU."""
    setting, lora = config.train.embeddings_on_host, config.lora
    fast = config.train.fast_path and config.model.compute_dtype != "float32"
    trains = names_embedding(lora.modules_to_save) or names_embedding(lora.target_modules)
    return (fast if setting == "auto" else bool(setting)) and not tied and not trains


def names_embedding(modules: list[str] | str | None) -> bool:
    """Whether lora.modules_to_save or lora.target_modules name the input embedding (it trains then)."""
    names = [modules] if isinstance(modules, str) else list(modules or [])
    return any(name.split(".")[-1] in EMBEDDING_NAMES for name in names)


def why_not(model: nn.Module) -> str | None:
    """Why `model`'s input embedding cannot move to the host, or None when it can."""
    embedding = model.get_input_embeddings()
    weight = getattr(embedding, "weight", None)
    shared = sum(1 for _, p in model.named_parameters(remove_duplicate=False) if p is weight) > 1
    text = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if shared or getattr(text, "tie_word_embeddings", False):
        return "its output head is tied to the input embedding (the head reads the table every step)"
    if type(embedding) is not nn.Embedding or embedding.max_norm is not None:
        return (
            f"its input embedding is a {type(embedding).__name__}, not a plain lookup table (a scaled "
            "embedding, or one that trains through lora.modules_to_save or target_modules)"
        )
    if weight.requires_grad:
        return "its input embedding trains (lora.modules_to_save)"
    return None


class HostEmbedding:
    """An input embedding whose table lives on the host, with the rows of prepared micro-batches."""

    def __init__(self, module: nn.Embedding, device: torch.device):
        self.module = module
        self.device = device  # where the model computes; the table is on HOST
        self.pin = torch.cuda.is_available()  # pinned rows copy to a GPU without waiting for it
        self._staged: dict[int, tuple[weakref.ref, torch.Tensor]] = {}
        self.waits = 0  # lookups whose ids were on the device only, copied back with a wait

    @property
    def table(self) -> torch.Tensor:
        return self.module.weight

    def gather(self, host_ids: torch.Tensor) -> torch.Tensor:
        """The rows of `host_ids` (on the host), in pinned memory where there is a GPU to copy them to."""
        flat = host_ids.reshape(-1)
        rows = torch.empty((flat.numel(), self.table.shape[1]), dtype=self.table.dtype, pin_memory=self.pin)
        torch.index_select(self.table.detach(), 0, flat, out=rows)
        return rows.view(*host_ids.shape, self.table.shape[1])

    def stage(self, host_batch: Mapping[str, Any], device_batch: Mapping[str, Any]) -> None:
        """Gather the rows of a collated batch now, for the forward that reads `device_batch` (nested
        batches too: KTO's KL rows)."""
        for key, host in host_batch.items():
            if isinstance(host, Mapping):
                self.stage(host, device_batch[key])
            elif key == "input_ids":
                self._file(device_batch[key], self.gather(host))

    def _file(self, device_ids: torch.Tensor, rows: torch.Tensor) -> None:
        key = id(device_ids)
        self._staged[key] = (weakref.ref(device_ids, lambda _: self._staged.pop(key, None)), rows)

    def _rows_for(self, ids: torch.Tensor) -> torch.Tensor:
        staged = self._staged.get(id(ids))
        if staged is not None and staged[0]() is ids:
            return staged[1]  # kept for a second pass over the same ids (DPO's and KTO's reference pass)
        if ids.device.type != HOST.type:
            self.waits += 1
            ids = ids.to(HOST)
        return self.gather(ids)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """The embedding's forward: the host rows, copied to the device (queued, no wait from pinned rows)."""
        rows = self._rows_for(ids)
        embedded = torch.empty(rows.shape, dtype=rows.dtype, device=self.device)
        return embedded.copy_(rows, non_blocking=self.pin)


def move_if_wanted(
    model: nn.Module, setting: str | bool, *, device: torch.device, fast_path: bool, distributed: bool
) -> HostEmbedding | None:
    """The host table `train.embeddings_on_host` asks for, where the model allows it. auto leaves a table
    that cannot move on the GPU; true says why it cannot, as a TrainError naming the key."""
    if not wanted(setting, device=device, fast_path=fast_path, distributed=distributed):
        return None
    reason = "it runs under torchrun (DDP and FSDP want every parameter on the GPU)" if distributed else None
    reason = reason or why_not(model)
    if reason is None:
        return keep_on_host(model, device)
    if setting is True:
        raise TrainError(
            f"train.embeddings_on_host is true, but this training cannot keep the input embedding in host "
            f"memory: {reason}. Set train.embeddings_on_host to auto (on where it can be) or false"
        )
    return None


def keep_on_host(model: nn.Module, device: torch.device) -> HostEmbedding:
    """Move `model`'s input embedding table to host memory and give the module the host forward. The
    module stays the model's, with its hooks; the device copy is freed. Check `why_not` first."""
    module = model.get_input_embeddings()
    host = HostEmbedding(module, device)
    module.weight.data = module.weight.data.to(HOST)
    module._forumtune_host_embedding = host
    module.forward = host.forward
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # give the table's memory back to the card, not only to the allocator
    return host


def installed(model: nn.Module) -> HostEmbedding | None:
    """The host embedding of `model` (a PeftModel or its base), if its table was moved."""
    return getattr(model.get_input_embeddings(), "_forumtune_host_embedding", None)
