"""Sample packing: several examples in one row of at most max_seq_len tokens, none seeing another.

A packed row carries `position_ids` that restart at 0 for each example. Given position ids and no
2D attention mask, transformers (masking_utils.find_packed_sequence_indices) turns every restart
into a document boundary, so sdpa and eager attention stay block-diagonal (tests/data/test_packing.py
checks that packed and unpacked training give the same per-example loss). The first label of each example is masked: in a packed
row it would be predicted from the end of the example before it, which an unpacked row never does.
Preference answers are packed the same way, per micro-batch, when the train stage collates them
(forumtune.preference_batches.packed_rows).
"""

from __future__ import annotations

import random

from forumtune.bin_packing import pack_bins
from forumtune.records import IGNORE_INDEX, ExampleRow, PackedRow


def pack_records(records: list[ExampleRow], max_seq_len: int, seed: int) -> list[PackedRow]:
    """Packed rows of input_ids, labels and restarting position_ids; the row order is shuffled by seed."""
    lengths = [len(record["input_ids"]) for record in records]
    if max(lengths, default=0) > max_seq_len:
        raise ValueError(f"an example of {max(lengths)} tokens does not fit max_seq_len={max_seq_len}")
    bins = pack_bins(lengths, max_seq_len)
    random.Random(seed).shuffle(bins)
    rows = []
    for indices in bins:
        row = PackedRow(thread_ids=[], input_ids=[], labels=[], position_ids=[])
        for index in sorted(indices):
            record = records[index]
            row["thread_ids"].append(record["thread_id"])
            row["input_ids"] += record["input_ids"]
            row["labels"] += [IGNORE_INDEX] + record["labels"][1:]
            row["position_ids"] += list(range(len(record["input_ids"])))
        rows.append(row)
    return rows
