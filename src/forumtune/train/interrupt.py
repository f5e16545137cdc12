"""Ctrl-C (SIGINT) and SIGTERM during training: finish the step, save it, say how to resume.

In one process the first signal is only noted; the loop reads it after the step (and its eval or
save) and stops there with a checkpoint of that step, which takes a second or two: the adapter and
its optimizer state, not the base model. A second signal stops at once, from wherever the run is
(a checkpoint being written then stays `.partial` and is ignored). Under torchrun the signal reaches
every rank at a different point of its step, so there is no agreed step to save: each process stops
at once, and the run resumes from its last regular checkpoint. Either way the exit status is the
shell's for the signal (130 for SIGINT, 143 for SIGTERM) and stderr names the last saved step and
the command that resumes.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from forumtune.layout import RunLayout, checkpoint_dirs, checkpoint_step
from forumtune.train.resume import rerun_command

SIGNAL_NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}


class StopNow(Exception):
    """A second signal: stop without finishing the step."""

    def __init__(self, signum: int):
        super().__init__(SIGNAL_NAMES.get(signum, f"signal {signum}"))
        self.signum = signum


class TrainingStopped(Exception):
    """The loop stopped after a step because a signal asked it to, and saved that step."""

    def __init__(self, signum: int, step: int, checkpoint: Path):
        super().__init__(f"stopped after step {step}")
        self.signum, self.step, self.checkpoint = signum, step, checkpoint


class StopRequest:
    """The signal that asked training to stop, if one did; read by the loop between steps."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise StopNow(signum)
        self.signum = signum


@contextmanager
def stop_after_the_step(enabled: bool) -> Iterator[StopRequest]:
    """Inside, SIGINT and SIGTERM set the request instead of stopping (when `enabled`: one process,
    the main thread); a second one raises StopNow. The previous handlers come back on exit."""
    request = StopRequest()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {signum: signal.signal(signum, request) for signum in SIGNAL_NAMES}
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def exit_status(signum: int) -> int:
    return 128 + signum


def stop_message(layout: RunLayout, stopped: BaseException) -> str:
    """For stderr: what stopped the run, the last step saved, and the command that resumes."""
    signum = getattr(stopped, "signum", signal.SIGINT)
    how = SIGNAL_NAMES.get(signum, f"signal {signum}")
    if isinstance(stopped, TrainingStopped):
        first = f"training stopped by {how} after step {stopped.step}, saved in {stopped.checkpoint}."
    else:
        saved = checkpoint_dirs(layout.checkpoints)
        last = (
            f"the last saved step is {checkpoint_step(saved[-1])} ({saved[-1]})"
            if saved
            else "no step was saved yet (rerunning starts from step 0)"
        )
        first = f"training stopped by {how} without saving its current step; {last}."
    return f"{first}\nTo resume: {rerun_command(layout, restart=False)}"
