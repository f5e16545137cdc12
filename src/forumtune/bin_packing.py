"""Best-fit decreasing bin packing: which sequences share a row. The build packs SFT examples with it
(forumtune.data.packing) and the preference batches pack chosen and rejected answers with it
(forumtune.preference_batches)."""

from __future__ import annotations

import bisect


def pack_bins(lengths: list[int], capacity: int) -> list[list[int]]:
    """Best-fit decreasing: indices grouped so each group's lengths sum to at most capacity (a length over
    capacity gets a group of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, bin index), sorted: the tightest fit is found by bisect
    for index in order:
        slot = bisect.bisect_left(free, (lengths[index], -1))
        if slot == len(free):
            bins.append([index])
            room, number = capacity - lengths[index], len(bins) - 1
        else:
            room, number = free.pop(slot)
            bins[number].append(index)
            room -= lengths[index]
        if room > 0:
            bisect.insort(free, (room, number))
    return bins
