"""Rerunning training never throws work away: checkpoints of other settings are refused while their
training is unfinished, set aside once it finished or on --restart, and never deleted."""

import signal
import subprocess
import sys

import pytest
from rich.console import Console

from forumtune.config import load_config
from forumtune.layout import RunLayout
from forumtune.train.interrupt import StopRequest, TrainingStopped
from forumtune.train.loop import run_train, setup, train
from forumtune.train.resume import changed_settings, training_settings
from tests.conftest import write_config
from tests.e2e.test_reruns import NOT_RERUNNING
from tests.train.conftest import write_dataset
from tests.train.test_resume import environment, rows

CONSOLE = Console(quiet=True)
TRAIN = {
    "max_steps": 6,
    "micro_batch_size": 4,
    "grad_accum_steps": 1,
    "learning_rate": 1e-2,
    "eval_every": 2,
    "save_every": 2,
}


def files_of(directory):
    return {
        path.relative_to(directory): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def stopped_after_three_steps(config):
    """A training that a Ctrl-C stopped after step 3: checkpoints of steps 2 and 3, and the best adapter."""
    run = setup(config, config.run_dir / "dataset", RunLayout.of(config), CONSOLE)
    request = StopRequest()
    original = run.reporter.write

    def write_and_signal(**row):
        original(**row)
        if row["split"] == "train" and row["step"] == 3:
            request(signal.SIGINT, None)

    run.reporter.write = write_and_signal
    with pytest.raises(TrainingStopped) as stopped:
        train(run, CONSOLE, request)
    run.reporter.close()
    assert stopped.value.step == 3
    return config.run_dir / "checkpoints"


@pytest.fixture
def config_path(tmp_path, tiny_tokenizer, tiny_mistral):
    path = write_config(tmp_path, model={"base": str(tiny_mistral)}, train=TRAIN)
    write_dataset(load_config(path).run_dir / "dataset", tiny_tokenizer)
    return path


def test_changed_settings_are_refused_while_the_training_is_unfinished(config_path):
    checkpoints = stopped_after_three_steps(load_config(config_path))
    before = files_of(checkpoints)
    assert {"step-000002", "step-000003", "best"} <= {path.name for path in checkpoints.iterdir()}

    command = [
        sys.executable,
        "-m",
        "forumtune.cli",
        "train",
        str(config_path),
        "--set",
        "train.learning_rate=0.02",
        "--set",
        "lora.r=8",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, env=environment(), timeout=300, check=False
    )
    message = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert "holds an unfinished training (saved up to step 3) made with other settings" in message
    assert "lora.r: 16 → 8; train.learning_rate: 0.01 → 0.02" in message
    restart = f"forumtune train {config_path} --set train.learning_rate=0.02 --set lora.r=8 --restart"
    assert f"start over with `{restart}`" in message
    assert files_of(checkpoints) == before  # untouched

    resumed = subprocess.run(
        command[:5] + ["--resume"],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=300,
        check=False,
    )  # --resume, the old spelling of the default, still works
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming from step-000003 (step 3 of 6)" in resumed.stdout


def test_restart_sets_the_earlier_training_aside_and_starts_from_step_0(config_path):
    config = load_config(config_path)
    checkpoints = stopped_after_three_steps(config)
    before, metrics_before = files_of(checkpoints), (config.run_dir / "metrics.csv").read_bytes()

    run_train(config, config.run_dir / "dataset", config.run_dir, CONSOLE, restart=True)

    [previous] = (config.run_dir / "previous").iterdir()
    assert files_of(previous / "checkpoints") == before
    assert (previous / "metrics.csv").read_bytes() == metrics_before
    assert [int(row["step"]) for row in rows(config.run_dir, "train")] == list(range(1, 7))


def test_a_finished_training_with_other_settings_is_set_aside_for_a_new_one(config_path):
    config = load_config(config_path)
    run_train(config, config.run_dir / "dataset", config.run_dir, CONSOLE)
    before = files_of(config.run_dir / "checkpoints")

    changed = load_config(config_path, ["train.learning_rate=0.02"])
    run_train(changed, changed.run_dir / "dataset", changed.run_dir, CONSOLE)

    [previous] = (config.run_dir / "previous").iterdir()
    assert files_of(previous / "checkpoints") == before
    assert [int(row["step"]) for row in rows(config.run_dir, "train")] == list(range(1, 7))
    assert float(rows(config.run_dir, "train")[-1]["lr"]) == pytest.approx(0.02)


# Keys marked NO_RERUN or RESUMES in config.py: a training resumes checkpoints made with other values.
RESUMABLE = [
    *(change for change in NOT_RERUNNING if change.startswith("train.")),
    "train.eval_every=5",
    "train.final_adapter=last",
    "train.early_stopping_patience=3",
    "train.early_stopping_min_delta=0.1",
    "train.device=cpu",
    "train.gradient_checkpointing=false",
]


@pytest.mark.parametrize("change", RESUMABLE)
def test_keys_that_leave_the_steps_alone_do_not_block_a_resume(tmp_path, change):
    base, changed = load_config(write_config(tmp_path)), load_config(write_config(tmp_path), [change])
    assert base != changed
    assert training_settings(changed, tmp_path, 1) == training_settings(base, tmp_path, 1)


@pytest.mark.parametrize(
    "change",
    ["train.learning_rate=0.02", "lora.r=8", "train.fast_path=false", "train.micro_batch_size=1", "seed=7"],
)
def test_keys_that_change_a_step_are_recorded(tmp_path, change):
    base, changed = load_config(write_config(tmp_path)), load_config(write_config(tmp_path), [change])
    assert changed_settings(training_settings(base, tmp_path, 1), training_settings(changed, tmp_path, 1))


def test_a_key_the_record_has_but_no_longer_decides_the_steps_is_not_compared():
    """A record written before a key was marked RESUMES still resumes."""
    current = {"train.learning_rate": 0.01, "seed": 42}
    assert changed_settings({**current, "train.dequantize_kernel": "triton"}, current) == []
    assert changed_settings({**current, "seed": 7}, current) == ["seed: 7 → 42"]
