"""A `forumtune train` process killed with SIGKILL mid-run and restarted with --resume ends where an
uninterrupted run with the same seed ends: adapter, optimizer, scheduler, data order and RNG restored."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest

from forumtune.config import load_config
from tests.conftest import write_config
from tests.train.conftest import write_dataset

TRAIN = {"max_steps": 16, "micro_batch_size": 4, "grad_accum_steps": 2, "learning_rate": 1e-2, "warmup_steps": 2,
         "eval_every": 8, "save_every": 3, "keep_checkpoints": 2}


def start_train(config_path, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "forumtune.cli", "train", str(config_path), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def rows(run_dir, split):
    with (run_dir / "metrics.csv").open() as handle:
        return [row for row in csv.DictReader(handle) if row["split"] == split]


def wait_for(path, process, timeout_s=120):
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_sigkilled_run_resumes_to_the_same_final_loss(tmp_path, tiny_tokenizer, tiny_mistral):
    configs = {}
    for name in ("whole", "killed"):
        path = write_config(tmp_path / name, model={"base": str(tiny_mistral)}, train=TRAIN)
        configs[name] = path
        write_dataset(load_config(path).run_dir / "dataset", tiny_tokenizer)
    run_dirs = {name: load_config(path).run_dir for name, path in configs.items()}
    whole = start_train(configs["whole"])
    killed = start_train(configs["killed"])
    wait_for(run_dirs["killed"] / "checkpoints" / "step-000006", killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert not (run_dirs["killed"] / "adapter").exists()  # it really died mid-training
    assert len(rows(run_dirs["killed"], "train")) < TRAIN["max_steps"]
    assert whole.wait() == 0, whole.stdout.read()

    resumed = start_train(configs["killed"], "--resume")
    output, _ = resumed.communicate()
    assert resumed.returncode == 0, output
    assert "resuming from step-000006" in output
    expected, got = rows(run_dirs["whole"], "train"), rows(run_dirs["killed"], "train")
    assert [int(r["step"]) for r in got] == list(range(1, 17))
    assert float(got[-1]["loss"]) == pytest.approx(float(expected[-1]["loss"]), rel=1e-3)
    assert [float(r["loss"]) for r in got] == pytest.approx([float(r["loss"]) for r in expected], rel=1e-3)
    assert float(rows(run_dirs["killed"], "eval")[-1]["loss"]) == pytest.approx(
        float(rows(run_dirs["whole"], "eval")[-1]["loss"]), rel=1e-3)
    checkpoints = sorted(p.name for p in (run_dirs["killed"] / "checkpoints").iterdir())
    assert checkpoints == ["best", "settings.json", "step-000012", "step-000015"]  # the last two, no half-written
