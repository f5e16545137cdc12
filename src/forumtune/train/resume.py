"""Where a training run starts: from its last checkpoint, or from step 0 with earlier work set aside.

A run that finds checkpoints made with the same settings resumes from the last one; that is the
default, so rerunning the command that was interrupted continues it. The settings that decide what
each step computes (model, lora, train minus bookkeeping, seed, number of processes, the dataset's
bytes) are recorded in checkpoints/settings.json when a training starts, and a run with other settings
does not resume silently from checkpoints that are not its own:
- the earlier training had finished: it is set aside and a new one starts;
- it had not: the run stops, naming what changed, with the command that starts over (`--restart`).
Starting over never deletes: checkpoints, metrics and logs of the earlier training move to
previous/<time>/.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from forumtune.atomic import atomic_file, remove_unfinished
from forumtune.config import Config, resume_exclusions
from forumtune.errors import TrainError
from forumtune.layout import BEST_CHECKPOINT, RunLayout, checkpoint_dirs, checkpoint_step

SETTINGS_FILE = "settings.json"


@dataclass(frozen=True)
class Start:
    checkpoint: Path | None  # None: from step 0
    note: str | None = None  # what to tell the user about the choice


def training_settings(config: Config, dataset_dir: Path, processes: int) -> dict[str, Any]:
    """Dotted keys and values that a checkpoint must share with the run that resumes it: what decides an
    optimizer step's maths. Keys marked NO_RERUN or RESUMES in config.py are left out."""
    dumped = config.model_dump(
        mode="json", include={"model", "lora", "train"}, exclude=resume_exclusions(Config)
    )
    settings: dict[str, Any] = {
        f"{section}.{key}": value
        for section in ("model", "lora", "train")
        for key, value in dumped[section].items()
    }
    settings.pop("train.then", None)  # what trains after this training does not change it
    settings.update({"seed": config.seed, "processes": processes, "dataset": dataset_digest(dataset_dir)})
    return settings


def dataset_digest(dataset_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in ("train.jsonl", "eval.jsonl", "preferences_train.jsonl", "preferences_eval.jsonl"):
        path = dataset_dir / name
        if path.exists():
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def read_record(root: Path) -> dict[str, Any] | None:
    path = root / SETTINGS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def write_record(root: Path, settings: dict[str, Any], *, finished: bool) -> None:
    with atomic_file(root / SETTINGS_FILE) as partial:
        partial.write_text(json.dumps({"settings": settings, "finished": finished}, indent=2))


def changed_settings(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'key: old → new' for every setting that differs. A key only the record has is not one that decides
    the steps now (marked RESUMES since, or gone from the config), so it is not compared."""
    changes = []
    for key in sorted(current):
        old, new = recorded.get(key), current.get(key)
        if old != new:
            what = (
                "its contents changed (rebuilt?)"
                if key == "dataset"
                else f"{json.dumps(old)} → {json.dumps(new)}"
            )
            changes.append(f"{key}: {what}")
    return changes


def choose_start(layout: RunLayout, settings: dict[str, Any], *, restart: bool) -> Start:
    """From which checkpoint this run starts; raises TrainError rather than resume another training's."""
    root = layout.checkpoints
    found = checkpoint_dirs(root)
    if restart:
        return Start(None, "--restart: training starts over from step 0")
    if not found:
        return Start(None)
    record = read_record(root)
    if record is None:
        return Start(
            found[-1],
            "checkpoints/ holds no record of its settings (saved by an older forumtune): "
            "resuming as if they matched; if the config changed since, use --restart",
        )
    changes = changed_settings(record["settings"], settings)
    if not changes:
        return Start(found[-1])
    listed = "; ".join(changes)
    if record.get("finished"):
        return Start(
            None, f"the settings changed since the last training finished ({listed}): a new one starts"
        )
    raise TrainError(
        f"{root} holds an unfinished training (saved up to step {checkpoint_step(found[-1])}) made with other "
        f"settings: {listed}. Resuming would mix two trainings. Put those settings back to "
        f"continue it, or start over with `{rerun_command(layout, restart=True)}` (its checkpoints move to "
        f"{layout.previous_trainings}/, nothing is deleted)."
    )


def begin_checkpoints(layout: RunLayout, start: Start, settings: dict[str, Any], console: Console) -> None:
    """On the main process, once the start is chosen: half-written checkpoints go, and a training from
    step 0 sets the earlier one aside and records its own settings."""
    root = layout.checkpoints
    remove_unfinished(root)
    if start.note:
        console.print(f"[yellow]{start.note}[/yellow]")
    if start.checkpoint is not None:
        return
    moved = set_aside_earlier_training(layout)
    if moved is not None:
        console.print(
            f"the earlier training's checkpoints and metrics are now in {moved} (nothing was deleted; "
            "remove that folder once you no longer need it)"
        )
    write_record(root, settings, finished=False)


def holds_work(root: Path) -> bool:
    return bool(checkpoint_dirs(root)) or (root / BEST_CHECKPOINT).is_dir()


def set_aside_earlier_training(layout: RunLayout) -> Path | None:
    """Before a training starts from step 0: the earlier one's checkpoints and logs go to previous/<time>/."""
    if not holds_work(layout.checkpoints):
        return None
    target = layout.previous_trainings / time.strftime("%Y%m%d-%H%M%S")
    while target.exists():  # two restarts within a second
        target = target.with_name(target.name + "-1")
    target.mkdir(parents=True)
    for output in layout.training_outputs:
        if output.exists():
            output.rename(target / output.name)
    return target


def rerun_command(layout: RunLayout, *, restart: bool) -> str:
    """The command this process was started with, to type again: as it is to resume (the default), with
    --restart to start over. Outside the command line, `forumtune train` on the run's saved config."""
    args = sys.argv[1:]
    if not args or args[0] not in ("train", "run"):
        args = ["train", str(layout.config_file)]
    args = [arg for arg in args if arg not in ("--restart", "--resume")] + (["--restart"] if restart else [])
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        launcher = [
            "torchrun",
            "--nproc-per-node",
            os.environ.get("LOCAL_WORLD_SIZE", "N"),
            "-m",
            "forumtune.cli",
        ]
    else:
        launcher = ["forumtune"]
    return shlex.join(launcher + args)
