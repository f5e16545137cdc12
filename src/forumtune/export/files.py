"""Outputs that appear only once complete: a file is written beside its target, then renamed (directories:
forumtune.atomic)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from forumtune.export.errors import ExportError


def read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ExportError(
            f"{path} not found: {what} is required; export a directory written by `forumtune merge`."
        )
    with path.open(encoding="utf-8") as file:
        return json.load(file)


def hidden_sibling(path: Path, purpose: str) -> Path:
    return path.parent / f".{path.name}.{purpose}-{uuid.uuid4().hex[:12]}"


@contextmanager
def atomic_output(out_path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `out_path`; rename it over `out_path` on success, delete it on failure."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial_path = out_path.with_name(f".{out_path.name}.partial-{uuid.uuid4().hex[:12]}")
    try:
        yield partial_path
        os.replace(partial_path, out_path)
    except BaseException:
        partial_path.unlink(missing_ok=True)
        raise
