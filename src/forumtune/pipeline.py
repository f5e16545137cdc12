"""Stage order, the run directory, and skip-what-is-done.

A stage is done when its outputs exist, are newer than its inputs, and were made with the same
values of the config keys that stage reads. So a second `run` skips everything, deleting one
artifact reruns the stage that makes it, and changing `train.max_steps` reruns training and what
follows it, but not the scrape.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from forumtune.config import Config, dump_config
from forumtune.errors import ForumtuneError

STAMPS_DIR = ".stages"


@dataclass(frozen=True)
class Stage:
    name: str
    inputs: Callable[[Config], list[str]]
    outputs: Callable[[Config], list[str]]
    config_keys: tuple[str, ...]
    run: Callable[[Config, Path, Console], Any]


def gguf_name(config: Config) -> str:
    return f"export/{config.name}-{config.export.gguf_type}.gguf"


def _scrape(config: Config, run_dir: Path, console: Console) -> Any:
    from forumtune.scrape.stage import run_scrape

    return run_scrape(config, run_dir / "forum.sqlite", console).as_dict()


def _build(config: Config, run_dir: Path, console: Console) -> Any:
    from forumtune.data.build import run_build

    return run_build(config, run_dir / "forum.sqlite", run_dir / "dataset", console)


def _train(config: Config, run_dir: Path, console: Console, restart: bool = False) -> Any:
    from forumtune.train.loop import run_train

    summary = run_train(config, run_dir / "dataset", run_dir, console, restart=restart)
    if is_main_process():
        (run_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _eval(config: Config, run_dir: Path, console: Console) -> Any:
    from forumtune.eval.stage import run_eval

    return run_eval(config, run_dir, console)


def _merge(config: Config, run_dir: Path, console: Console) -> Any:
    from forumtune.export.stage import run_merge

    return run_merge(config, run_dir, console)


def _export(config: Config, run_dir: Path, console: Console, **options: Any) -> Any:
    from forumtune.export.stage import run_export

    return run_export(config, run_dir, console, **options)


ADAPTER = "adapter/adapter_model.safetensors"
DATASET = ["dataset/train.jsonl", "dataset/eval.jsonl", "dataset/stats.json"]

STAGES: list[Stage] = [
    Stage("scrape", lambda c: [], lambda c: ["forum.sqlite"], ("scrape",), _scrape),
    Stage("build", lambda c: [str(c.build.input_file)] if c.build.input_file else ["forum.sqlite"],
          lambda c: DATASET, ("build", "model.base", "seed"), _build),
    Stage("train", lambda c: DATASET, lambda c: [ADAPTER, "metrics.csv", "train_summary.json"],
          ("model", "lora", "train", "seed"), _train),
    Stage("eval", lambda c: [ADAPTER, "metrics.csv"], lambda c: ["eval/metrics.json", "loss.png", "report.html"],
          ("eval",), _eval),
    Stage("merge", lambda c: [ADAPTER], lambda c: ["merged/config.json"], ("merge",), _merge),
    Stage("export", lambda c: ["merged/config.json"], lambda c: [gguf_name(c)], ("export",), _export),
]
STAGE_NAMES = [stage.name for stage in STAGES]


def get_stage(name: str) -> Stage:
    return next(stage for stage in STAGES if stage.name == name)


def _config_value(config: Config, dotted: str) -> Any:
    value: Any = config.model_dump(mode="json")
    for key in dotted.split("."):
        value = value[key]
    return value


def stage_fingerprint(stage: Stage, config: Config) -> str:
    values = {key: _config_value(config, key) for key in stage.config_keys}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def stale_reason(stage: Stage, config: Config, run_dir: Path) -> str | None:
    """Why the stage must run, or None when its outputs are up to date."""
    outputs = [run_dir / p for p in stage.outputs(config)]
    missing = [p for p in outputs if not p.exists()]
    if missing:
        return f"{missing[0].relative_to(run_dir)} is missing"
    stamp = run_dir / STAMPS_DIR / f"{stage.name}.json"
    if not stamp.exists():
        return "its last run did not finish"
    if json.loads(stamp.read_text()).get("fingerprint") != stage_fingerprint(stage, config):
        return f"its settings ({', '.join(stage.config_keys)}) changed"
    inputs = [run_dir / p for p in stage.inputs(config) if (run_dir / p).exists()]
    if inputs and max(p.stat().st_mtime for p in inputs) > min(p.stat().st_mtime for p in outputs):
        return "its inputs are newer than its outputs"
    if stage.name == "scrape" and not _crawl_complete(run_dir / "forum.sqlite"):
        return "the last crawl did not finish"
    return None


def _crawl_complete(store_path: Path) -> bool:
    from forumtune.scrape.crawler import CRAWL_COMPLETE
    from forumtune.scrape.store import ForumStore

    with ForumStore(store_path) as store:
        return store.get_meta(CRAWL_COMPLETE) == "1"


def is_main_process() -> bool:
    """False in the other processes of a torchrun launch: rank 0 alone writes the run's files."""
    return os.environ.get("RANK", "0") == "0"


def prepare_run_dir(config: Config) -> Path:
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_main_process():
        (run_dir / "config.yaml").write_text(dump_config(config))
    return run_dir


def run_stage(stage: Stage, config: Config, console: Console, **options: Any) -> Any:
    """Run one stage now, whatever its state, and stamp it as done with the current settings."""
    run_dir = prepare_run_dir(config)
    console.rule(f"[bold]{stage.name}")
    stamps = run_dir / STAMPS_DIR
    if is_main_process():  # a stage stopped halfway is not done, whatever outputs an earlier run left
        (stamps / f"{stage.name}.json").unlink(missing_ok=True)
    started = time.perf_counter()
    result = stage.run(config, run_dir, console, **options)
    if not is_main_process():
        return result
    stamps.mkdir(exist_ok=True)
    (stamps / f"{stage.name}.json").write_text(json.dumps(
        {"fingerprint": stage_fingerprint(stage, config), "seconds": round(time.perf_counter() - started, 2)}))
    return result


def run_pipeline(config: Config, console: Console, *, force: bool = False, until: str | None = None,
                 restart: bool = False) -> list[str]:
    """Every stage in order, skipping those already done; returns the names of the stages that ran.
    Training resumes from its checkpoints; `restart` trains from step 0 (earlier checkpoints set aside)."""
    ran: list[str] = []
    run_dir = prepare_run_dir(config)
    for stage in STAGES:
        restarting = restart and stage.name == "train"
        reason = "forced" if force else "--restart" if restarting else stale_reason(stage, config, run_dir)
        if stage.name == "scrape" and config.build.input_file:
            console.print(f"[dim]scrape: not needed, the dataset comes from {config.build.input_file}[/dim]")
        elif reason is None:
            console.print(f"[dim]{stage.name}: up to date, skipped[/dim]")
        else:
            console.print(f"{stage.name}: running ({reason})")
            run_stage(stage, config, console, **({"restart": True} if restarting else {}))
            ran.append(stage.name)
        if stage.name == until:
            break
    return ran


__all__ = ["STAGES", "STAGE_NAMES", "ForumtuneError", "get_stage", "run_pipeline", "run_stage", "stale_reason"]
