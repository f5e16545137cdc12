"""metrics.csv: one row per logged train step and per eval, appended as training goes."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

COLUMNS = [
    "step",
    "split",
    "loss",
    "lr",
    "grad_norm",
    "tokens",
    "tokens_per_s",
    "peak_memory_mib",
    "elapsed_s",
]


class MetricsLog:
    def __init__(self, path: Path, resume_from_step: int = 0):
        self.path = path
        kept = (
            [row for row in read_metrics(path) if int(row["step"]) <= resume_from_step]
            if resume_from_step
            else []
        )
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(kept)

    def write(self, **row: Any) -> None:
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=COLUMNS).writerow(
                {key: (f"{value:.6g}" if isinstance(value, float) else value) for key, value in row.items()}
            )


def read_metrics(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))
