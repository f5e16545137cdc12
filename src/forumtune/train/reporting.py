"""Where training metrics go: metrics.csv always; TensorBoard and Weights & Biases when train.report_to
names them. Both are optional extras (`pip install 'forumtune[tensorboard]'` / `'forumtune[wandb]'`),
imported only when asked for. W&B's offline mode writes the run under runs/NAME/wandb/ with no network;
`wandb sync` uploads it later.
"""

from __future__ import annotations

import importlib.util
import shutil
import uuid
from typing import Any

from forumtune.config import Config, dump_config
from forumtune.errors import TrainError
from forumtune.layout import RunLayout
from forumtune.metrics_log import MetricsLog

PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


def check_loggers_installed(report_to: list[str]) -> None:
    missing = [name for name in report_to if importlib.util.find_spec(PACKAGES[name]) is None]
    if missing:
        extras = ",".join(missing)
        raise TrainError(
            f"train.report_to names {', '.join(missing)}, which is not installed: "
            f"pip install 'forumtune[{extras}]' (or remove it from train.report_to)"
        )


class Reporter:
    """One row per train step and per eval, to every configured logger; silent on ranks other than 0."""

    def __init__(self, config: Config, paths: RunLayout, resume_from_step: int, *, enabled: bool = True):
        self.enabled = enabled
        self.csv = MetricsLog(paths.metrics_csv, resume_from_step=resume_from_step) if enabled else None
        self.tensorboard = None
        self.wandb_run = None
        if not enabled:
            return
        if "tensorboard" in config.train.report_to:
            from torch.utils.tensorboard import SummaryWriter

            if resume_from_step == 0:  # a new run: not drawn over the curves of the one before
                shutil.rmtree(paths.tensorboard, ignore_errors=True)
            # purge_step drops events a killed run logged after its last checkpoint
            self.tensorboard = SummaryWriter(str(paths.tensorboard), purge_step=resume_from_step + 1)
        if "wandb" in config.train.report_to:
            self.wandb_run = _start_wandb(config, paths, resuming=resume_from_step > 0)

    def write(self, *, step: int, split: str, **values: Any) -> None:
        if not self.enabled:
            return
        self.csv.write(step=step, split=split, **values)
        scalars = {
            f"{split}/{key}": value
            for key, value in values.items()
            if isinstance(value, int | float) and key != "elapsed_s"
        }
        if self.tensorboard is not None:
            for key, value in scalars.items():
                self.tensorboard.add_scalar(key, value, step)
        if self.wandb_run is not None:
            self.wandb_run.log(scalars, step=step)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def _start_wandb(config: Config, paths: RunLayout, *, resuming: bool) -> Any:
    import wandb
    import yaml

    id_file = paths.wandb_id
    if not resuming or not id_file.exists():
        id_file.write_text(uuid.uuid4().hex[:12])
    return wandb.init(
        project=config.train.wandb_project,
        name=config.name,
        id=id_file.read_text().strip(),
        resume="allow",
        dir=str(paths.root),
        mode=config.train.wandb_mode,
        config=yaml.safe_load(dump_config(config)),
        settings=wandb.Settings(console="off", silent=True),
    )
