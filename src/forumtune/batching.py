"""Dataset rows as model batches, and the loss per trained token.

Training and the eval stage both go through these, so an eval loss measured by either counts the same
tokens with the same prompt masking and the same per-token averaging.
"""

from __future__ import annotations

from typing import Any

import torch

from forumtune import cpu_layout
from forumtune.records import IGNORE_INDEX, TokenizedRow


def collate(
    records: list[TokenizedRow], pad_id: int, device: torch.device, *, pad_to_multiple: int = 1
) -> dict[str, Any]:
    if "position_ids" in records[0]:
        return collate_packed(records, pad_id, device, pad_to_multiple=pad_to_multiple)
    width = padded_width(records, pad_to_multiple)
    input_ids = torch.full((len(records), width), pad_id, dtype=torch.long)
    labels = torch.full((len(records), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(records), width), dtype=torch.long)
    for row, record in enumerate(records):
        length = len(record["input_ids"])
        input_ids[row, :length] = torch.tensor(record["input_ids"])
        labels[row, :length] = torch.tensor(record["labels"])
        attention_mask[row, :length] = 1
    return {
        "input_ids": input_ids.to(device),
        "labels": labels.to(device),
        "attention_mask": attention_mask.to(device),
    }


def collate_packed(
    records: list[TokenizedRow], pad_id: int, device: torch.device, *, pad_to_multiple: int = 1
) -> dict[str, Any]:
    """Rows packed by the build: no 2D attention mask and no KV cache, so transformers reads the example
    boundaries from the restarting position ids (with either, it skips that and examples attend to each
    other). Right padding gets positions of its own, 0, 1, 2..., so it is one more example nothing sees."""
    width = padded_width(records, pad_to_multiple)
    input_ids = torch.full((len(records), width), pad_id, dtype=torch.long)
    labels = torch.full((len(records), width), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.arange(width, dtype=torch.long).repeat(len(records), 1)
    for row, record in enumerate(records):
        length = len(record["input_ids"])
        input_ids[row, :length] = torch.tensor(record["input_ids"])
        labels[row, :length] = torch.tensor(record["labels"])
        position_ids[row, :length] = torch.tensor(record["position_ids"])
        position_ids[row, length:] = torch.arange(width - length)
    return {
        "input_ids": input_ids.to(device),
        "labels": labels.to(device),
        "position_ids": position_ids.to(device),
        "use_cache": False,
    }


def padded_width(records: list[TokenizedRow], multiple: int) -> int:
    longest = max(len(r["input_ids"]) for r in records)
    return -(-longest // multiple) * multiple


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A host batch on `device`; to a GPU through pinned memory, so the copy does not wait for the GPU.
    Nested batches (KTO's KL rows) move too; values that are not tensors (a packed row's use_cache) stay."""

    def move(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: move(item) for key, item in value.items()}
        if not isinstance(value, torch.Tensor):
            return value
        if device.type != "cuda":
            return value.to(device)
        return value.pin_memory().to(device, non_blocking=True)

    return move(batch)


def input_token_count(batch: dict[str, torch.Tensor], pad_id: int) -> int:
    """Real (not padding) tokens of a batch, packed or not, with the KL rows a KTO batch carries."""
    nested = input_token_count(batch["kl"], pad_id) if "kl" in batch else 0
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum()) + nested
    return int((batch["input_ids"] != pad_id).sum()) + nested


def trained_token_count(batch: dict[str, torch.Tensor]) -> int:
    """Tokens that count in the loss after the one-position shift of causal LM labels."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


@torch.no_grad()
def mean_token_loss(
    model: torch.nn.Module, records: list[TokenizedRow], batch_size: int, pad_id: int, device: torch.device
) -> float:
    """Loss per trained token over all records (every token weighs the same, whatever its batch), in the
    trainable 4-bit layout: the eval-loss pass is where bitsandbytes would otherwise pack the weights."""
    cpu_layout.use_trainable_layout(model)
    was_training = model.training
    model.eval()
    total_loss, total_tokens = 0.0, 0
    for start in range(0, len(records), batch_size):
        batch = collate(records[start : start + batch_size], pad_id, device)
        tokens = trained_token_count(batch)
        if tokens == 0:
            continue
        output = model(**batch, num_items_in_batch=tokens)
        total_loss += float(output.loss) * tokens
        total_tokens += tokens
    model.train(was_training)
    return total_loss / max(total_tokens, 1)
