"""`torchrun --nproc-per-node 2 forumtune train` (DDP, or FSDP2 sharding the 4-bit base, over gloo on the
CPU) follows the loss curve of one process with the same global batch: each rank trains on its slice of
every global micro-batch."""

import csv
import os
import subprocess
import sys

import pytest
from rich.console import Console

from forumtune.config import load_config
from forumtune.train.batches import micro_batches
from forumtune.train.loop import run_train
from tests.conftest import write_config
from tests.train.conftest import write_dataset

TRAIN = {
    "max_steps": 4,
    "grad_accum_steps": 2,
    "learning_rate": 1e-2,
    "warmup_steps": 1,
    "eval_every": 4,
    "save_every": 2,
    "optimizer": "adamw",
}


def test_ranks_split_each_global_micro_batch_in_order():
    single = micro_batches(48, 4, seed=7)
    ranks = [micro_batches(48, 2, seed=7, rank=r, world_size=2) for r in (0, 1)]
    for _ in range(30):  # past the end of the first epoch
        assert next(single) == next(ranks[0]) + next(ranks[1])
    resumed = micro_batches(48, 2, seed=7, start=5, rank=1, world_size=2)
    fresh = micro_batches(48, 2, seed=7, rank=1, world_size=2)
    assert next(resumed) == [next(fresh) for _ in range(6)][-1]


def train_rows(run_dir):
    with (run_dir / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["ddp", "fsdp"])
def test_two_processes_match_one_process_with_the_same_global_batch(
    engine, tmp_path, tiny_tokenizer, tiny_mistral
):
    lora = {"dropout": 0.0}  # dropout masks are per process; without them the maths is the same
    ddp = load_config(
        write_config(
            tmp_path / "ddp",
            model={"base": str(tiny_mistral)},
            lora=lora,
            train={**TRAIN, "micro_batch_size": 2, "distributed": engine},
        )
    )
    single = load_config(
        write_config(
            tmp_path / "single",
            model={"base": str(tiny_mistral)},
            lora=lora,
            train={**TRAIN, "micro_batch_size": 4},
        )
    )
    for config in (ddp, single):
        write_dataset(config.run_dir / "dataset", tiny_tokenizer)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--standalone",
            "-m",
            "forumtune.cli",
            "train",
            str(tmp_path / "ddp" / "config.yaml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert launch.returncode == 0, launch.stdout + launch.stderr
    run_train(single, single.run_dir / "dataset", single.run_dir, Console(quiet=True))

    got, expected = train_rows(ddp.run_dir), train_rows(single.run_dir)
    assert [(r["step"], r["split"]) for r in got] == [(r["step"], r["split"]) for r in expected]
    assert [float(r["loss"]) for r in got] == pytest.approx([float(r["loss"]) for r in expected], rel=1e-4)
    assert [int(r["tokens"]) for r in got if r["tokens"]] == [
        int(r["tokens"]) for r in expected if r["tokens"]
    ]
    # rank 0 alone wrote the checkpoint and the adapter
    assert sorted(p.name for p in (ddp.run_dir / "checkpoints").iterdir()) == [
        "best",
        "settings.json",
        "step-000002",
    ]
    assert (ddp.run_dir / "adapter" / "adapter_model.safetensors").exists()
