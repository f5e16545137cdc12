"""SFT on rows the build packed (build.packing), through the training loop: a few real steps on the tiny
model. The loop sends each batch through batching.to_device, which a packed batch's use_cache flag once
broke; tests/data/test_packing.py shows that packed rows give the same per-example loss."""

from __future__ import annotations

import csv
import math

from rich.console import Console

from forumtune.config import load_config
from forumtune.data.packing import pack_records
from forumtune.records import read_rows, write_jsonl
from forumtune.train.loop import run_train
from tests.conftest import write_config
from tests.train.conftest import write_dataset


def test_sft_trains_on_packed_rows(tmp_path, tiny_tokenizer, tiny_mistral):
    config = load_config(
        write_config(
            tmp_path,
            model={"base": str(tiny_mistral)},
            build={"packing": True},
            train={"max_steps": 3, "micro_batch_size": 2, "grad_accum_steps": 1, "eval_every": 3},
        )
    )
    dataset = config.run_dir / "dataset"
    write_dataset(dataset, tiny_tokenizer)
    examples = read_rows(dataset / "train.jsonl")
    packed = pack_records(examples, config.build.max_seq_len, seed=0)
    assert len(packed) < len(examples)
    write_jsonl(dataset / "train.jsonl", packed)
    run_train(config, dataset, config.run_dir, Console(quiet=True))
    with (config.run_dir / "metrics.csv").open() as handle:
        losses = [float(row["loss"]) for row in csv.DictReader(handle) if row["split"] == "train"]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
