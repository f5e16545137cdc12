"""Reading the merged model's JSON files, and hidden names for the export's temporary files (outputs appear
only once complete through forumtune.atomic)."""

from __future__ import annotations

import json
import uuid
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
