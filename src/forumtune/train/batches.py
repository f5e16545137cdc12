"""The order of training examples: a seeded shuffle per epoch, cut into micro-batches (and per rank).

How a micro-batch of rows becomes tensors, and the loss per trained token, live in forumtune.batching
(the eval stage computes its eval loss the same way)."""

from __future__ import annotations

import random
from collections.abc import Iterator


def epoch_order(count: int, seed: int, epoch: int) -> list[int]:
    order = list(range(count))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def micro_batches(
    count: int, batch_size: int, seed: int, start: int = 0, *, rank: int = 0, world_size: int = 1
) -> Iterator[list[int]]:
    """Endless micro-batches of example indices; `start` skips that many already consumed (resume).

    Across `world_size` processes each global micro-batch of batch_size × world_size examples is cut
    into one slice per rank, so N processes see the examples that one process with an N times larger
    micro-batch would see, in the same order."""
    global_size = batch_size * world_size
    position = 0
    epoch = 0
    while True:
        order = epoch_order(count, seed, epoch)
        for offset in range(0, count - global_size + 1 if count >= global_size else 1, global_size):
            if position >= start:
                yield order[offset + rank * batch_size : offset + (rank + 1) * batch_size]
            position += 1
        epoch += 1
