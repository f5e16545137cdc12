"""Training interrupted for real, then continued by rerunning the same command: a `forumtune train` killed
with SIGKILL, a `forumtune run` stopped with Ctrl-C (in both CPU 4-bit layouts). Each ends with the metrics
of an uninterrupted run: adapter, optimizer, scheduler, data order and RNG restored."""

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from forumtune.config import load_config
from tests.conftest import ROOT, write_config
from tests.layouts import LAYOUTS, forumtune_command
from tests.train.conftest import write_dataset

TRAIN = {
    "max_steps": 16,
    "micro_batch_size": 4,
    "grad_accum_steps": 2,
    "learning_rate": 1e-2,
    "warmup_steps": 2,
    "eval_every": 8,
    "save_every": 3,
    "keep_checkpoints": 2,
}
# the demo config (built-in tiny Llama, NF4) made quick: an eval every 4 steps, so steps follow evals
DEMO_TRAIN = {"max_steps": 12, "eval_every": 4, "save_every": 4}
DEMO_EVAL = {"num_samples": 1, "max_new_tokens": 4, "checkpoints": False}
SAME_MATHS = (
    "step",
    "split",
    "loss",
    "lr",
    "grad_norm",
    "tokens",
)  # metrics.csv columns that timing leaves alone


def environment() -> dict[str, str]:
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    # COLUMNS: rich wraps at 80 columns when not on a terminal, which would break lines inside paths
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(paths), "COLUMNS": "1000"}


def start_train(config_path, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "forumtune.cli", "train", str(config_path), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment(),
    )


def rows(run_dir, split=None):
    with (run_dir / "metrics.csv").open() as handle:
        return [
            {key: row[key] for key in SAME_MATHS}
            for row in csv.DictReader(handle)
            if split is None or row["split"] == split
        ]


def wait_for(ready, process, timeout_s=120):
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run never got there"
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
    wait_for((run_dirs["killed"] / "checkpoints" / "step-000006").exists, killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert not (run_dirs["killed"] / "adapter").exists()  # it really died mid-training
    assert len(rows(run_dirs["killed"], "train")) < TRAIN["max_steps"]
    assert whole.wait() == 0, whole.stdout.read()

    resumed = start_train(configs["killed"])  # the same command: resuming is the default
    output, _ = resumed.communicate()
    assert resumed.returncode == 0, output
    assert "resuming from step-000006 (step 6 of 16)" in output
    assert [int(r["step"]) for r in rows(run_dirs["killed"], "train")] == list(range(1, 17))
    assert rows(run_dirs["killed"]) == rows(run_dirs["whole"])
    checkpoints = sorted(p.name for p in (run_dirs["killed"] / "checkpoints").iterdir())
    assert checkpoints == [
        "best",
        "settings.json",
        "step-000012",
        "step-000015",
    ]  # the last two, no half-written


@pytest.fixture(scope="module")
def built_demo(tmp_path_factory) -> Path:
    """The demo scraped and built once; each test copies its run dir."""
    config_path = write_config(tmp_path_factory.mktemp("built"), train=DEMO_TRAIN, eval=DEMO_EVAL)
    result = subprocess.run(
        [sys.executable, "-m", "forumtune.cli", "run", str(config_path), "--until", "build"],
        capture_output=True,
        text=True,
        env=environment(),
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return load_config(config_path).run_dir


def demo_copy(built: Path, where: Path) -> tuple[Path, Path]:
    config_path = write_config(where, train=DEMO_TRAIN, eval=DEMO_EVAL)
    run_dir = load_config(config_path).run_dir
    shutil.copytree(built, run_dir)  # the stamps and times of scrape and build come along: both are done
    return config_path, run_dir


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
def test_ctrl_c_during_run_then_the_same_command_continues_to_the_same_curve(layout, built_demo, tmp_path):
    whole_config, whole_dir = demo_copy(built_demo, tmp_path / "whole")
    config_path, run_dir = demo_copy(built_demo, tmp_path / "stopped")
    whole = subprocess.Popen(
        forumtune_command(layout, "run", str(whole_config), "--until", "train"),
        cwd=ROOT,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stopped = subprocess.Popen(
        forumtune_command(layout, "run", str(config_path)),
        cwd=ROOT,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: (run_dir / "metrics.csv").exists() and len(rows(run_dir, "train")) >= 5, stopped)
    stopped.send_signal(signal.SIGINT)
    output, errors = stopped.communicate(timeout=120)
    assert stopped.returncode == 130, output + errors
    step = len(rows(run_dir, "train"))
    assert 5 <= step < DEMO_TRAIN["max_steps"]
    checkpoint = run_dir / "checkpoints" / f"step-{step:06d}"
    assert f"training stopped by Ctrl-C (SIGINT) after step {step}, saved in {checkpoint}." in errors
    assert f"To resume: forumtune run {config_path}\n" in errors
    assert checkpoint.is_dir() and not (run_dir / "adapter").exists()
    assert whole.wait(timeout=300) == 0, whole.communicate()

    resumed = subprocess.run(
        forumtune_command(layout, "run", str(config_path)),
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "train: running (adapter/adapter_model.safetensors is missing)" in resumed.stdout
    assert f"resuming from step-{step:06d} (step {step} of 12)" in resumed.stdout
    assert rows(run_dir) == rows(whole_dir)
    assert len(rows(run_dir, "eval")) == 3
    assert (run_dir / "eval" / "metrics.json").exists() and (run_dir / "merged" / "config.json").exists()


def signal_at_step(monkeypatch, step: int, *signums: int) -> None:
    """Deliver `signums` to this process once training has logged `step`."""
    from forumtune.train.reporting import Reporter

    write = Reporter.write

    def write_then_signal(self, **row):
        write(self, **row)
        if row["split"] == "train" and row["step"] == step:
            for signum in signums:
                os.kill(os.getpid(), signum)

    monkeypatch.setattr(Reporter, "write", write_then_signal)


def test_sigterm_finishes_the_step_saves_it_and_exits_143(train_config, monkeypatch, capsys):
    from forumtune.train.loop import run_train

    run_dir = train_config.run_dir
    signal_at_step(monkeypatch, 5, signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        run_train(train_config, run_dir / "dataset", run_dir, Console(quiet=True))
    assert stopped.value.code == 143
    errors = capsys.readouterr().err
    assert (
        f"training stopped by SIGTERM after step 5, saved in {run_dir / 'checkpoints' / 'step-000005'}."
        in errors
    )
    assert f"To resume: forumtune train {run_dir / 'config.yaml'}" in errors
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are given back


def test_a_second_ctrl_c_stops_at_once_naming_the_last_saved_step(train_config, monkeypatch, capsys):
    from forumtune.train.loop import run_train

    run_dir = train_config.run_dir
    signal_at_step(monkeypatch, 5, signal.SIGINT, signal.SIGINT)
    with pytest.raises(SystemExit) as stopped:
        run_train(train_config, run_dir / "dataset", run_dir, Console(quiet=True))
    assert stopped.value.code == 130
    errors = capsys.readouterr().err
    last = run_dir / "checkpoints" / "step-000004"  # save_every 4
    assert (
        f"stopped by Ctrl-C (SIGINT) without saving its current step; the last saved step is 4 ({last})"
        in errors
    )
    assert not (run_dir / "checkpoints" / "step-000005").exists()
