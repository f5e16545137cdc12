"""Directories and files that appear only once complete: written beside their target, then renamed over it.

A stage killed at any moment leaves either the old directory or the new one, never half of one, so a
later run can trust whatever it finds. One writer per target: the staging name is fixed, so a rerun
clears what a killed writer left (a shared cache that several processes fill at once uses `first_wins`).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def staging_path(target: Path) -> Path:
    """Where `target` is written before it is renamed: a hidden `.NAME.partial` beside it."""
    return target.with_name(f".{target.name}.partial")


@contextmanager
def atomic_directory(target: Path, *, write: bool = True, first_wins: bool = False) -> Iterator[Path | None]:
    """Yield an empty staging dir beside `target`; when the block ends, it replaces `target`. On an
    error it is removed and `target` is left as it was.

    `write=False` yields None and touches nothing: in a torchrun launch every rank runs the same block
    (some saves gather tensors from all of them) and only rank 0 writes.

    `first_wins=True` is for a cache that several processes may fill at once (the built-in models): each
    writes its own staging dir, and one that finds `target` there when it finishes drops its copy."""
    if not write:
        yield None
        return
    staging = (
        target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:12]}")
        if first_wins
        else staging_path(target)
    )
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        if first_wins:
            _rename_unless_there(staging, target)
        else:
            replace_dir(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # a failed write, or the copy a faster process made first


def _rename_unless_there(staging: Path, target: Path) -> None:
    try:
        os.rename(staging, target)
    except OSError:
        if not target.is_dir():  # not another process's finished copy: a real failure
            raise


def remove_unfinished(parent: Path) -> None:
    """The staging dirs that writers killed mid-write left in `parent` (one writer per target: call it
    where no other writer is at work)."""
    for partial in parent.glob(".*.partial") if parent.is_dir() else []:
        shutil.rmtree(partial, ignore_errors=True)


@contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a path beside `target` to write the file to; when the block ends, it replaces `target`. On an
    error it is removed and `target` is left as it was."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:12]}")
    try:
        yield partial
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
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
