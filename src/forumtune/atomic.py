"""Directories that appear only once complete: written beside their target, then renamed over it.

A stage killed at any moment leaves either the old directory or the new one, never half of one, so a
later run can trust whatever it finds. One writer per target: the staging name is fixed, so a rerun
clears what a killed writer left.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def staging_path(target: Path) -> Path:
    """Where `target` is written before it is renamed: a hidden `.NAME.partial` beside it."""
    return target.with_name(f".{target.name}.partial")


@contextmanager
def atomic_directory(target: Path, *, write: bool = True) -> Iterator[Path | None]:
    """Yield an empty staging dir beside `target`; when the block ends, it replaces `target`. On an
    error it is removed and `target` is left as it was.

    `write=False` yields None and touches nothing: in a torchrun launch every rank runs the same block
    (some saves gather tensors from all of them) and only rank 0 writes."""
    if not write:
        yield None
        return
    staging = staging_path(target)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        replace_dir(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def replace_dir(new: Path, target: Path) -> None:
    """Rename `new` to `target`; an existing `target` is moved aside first and removed after, so at
    every moment one complete directory is there (or, after a crash in between, beside it)."""
    if not target.exists():
        os.replace(new, target)
        return
    previous = target.with_name(f".{target.name}.previous")
    shutil.rmtree(previous, ignore_errors=True)
    os.replace(target, previous)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(previous, target)
        raise
    shutil.rmtree(previous, ignore_errors=True)
