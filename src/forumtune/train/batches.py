"""Batches of tokenized examples: a seeded order per epoch, right padding, masked padding labels."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import torch

from forumtune.data.encode import IGNORE_INDEX


def collate(records: list[dict[str, Any]], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    width = max(len(r["input_ids"]) for r in records)
    input_ids = torch.full((len(records), width), pad_id, dtype=torch.long)
    labels = torch.full((len(records), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(records), width), dtype=torch.long)
    for row, record in enumerate(records):
        length = len(record["input_ids"])
        input_ids[row, :length] = torch.tensor(record["input_ids"])
        labels[row, :length] = torch.tensor(record["labels"])
        attention_mask[row, :length] = 1
    return {"input_ids": input_ids.to(device), "labels": labels.to(device),
            "attention_mask": attention_mask.to(device)}


def epoch_order(count: int, seed: int, epoch: int) -> list[int]:
    order = list(range(count))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def micro_batches(count: int, batch_size: int, seed: int, start: int = 0) -> Iterator[list[int]]:
    """Endless micro-batches of example indices; `start` skips that many already consumed (resume)."""
    position = 0
    epoch = 0
    while True:
        order = epoch_order(count, seed, epoch)
        for offset in range(0, count - batch_size + 1 if count >= batch_size else 1, batch_size):
            if position >= start:
                yield order[offset: offset + batch_size]
            position += 1
        epoch += 1


def trained_token_count(batch: dict[str, torch.Tensor]) -> int:
    """Tokens that count in the loss after the one-position shift of causal LM labels."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


@torch.no_grad()
def mean_token_loss(model: torch.nn.Module, records: list[dict[str, Any]], batch_size: int, pad_id: int,
                    device: torch.device) -> float:
    """Loss per trained token over all records (every token weighs the same, whatever its batch)."""
    was_training = model.training
    model.eval()
    total_loss, total_tokens = 0.0, 0
    for start in range(0, len(records), batch_size):
        batch = collate(records[start: start + batch_size], pad_id, device)
        tokens = trained_token_count(batch)
        if tokens == 0:
            continue
        output = model(**batch, num_items_in_batch=tokens)
        total_loss += float(output.loss) * tokens
        total_tokens += tokens
    model.train(was_training)
    return total_loss / max(total_tokens, 1)
