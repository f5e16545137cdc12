"""Stage order, the run directory, and skip-what-is-done.

A stage is done when its outputs exist, are newer than its inputs, and were made with the same
values of the config keys that stage reads. So a second `run` skips everything, deleting one
artifact reruns the stage that makes it, and changing `train.max_steps` reruns training and what
follows it, but not the scrape. Keys marked NO_RERUN in config.py (where logs go, checks, how the
same computation is scheduled) are left out: changing `train.report_to` reruns nothing. (config.py
says how far each marked key reaches; docs/ARCHITECTURE.md has the table.)
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console

from forumtune.config import Config, dump_config, rerun_exclusions
from forumtune.errors import ForumtuneError
from forumtune.layout import RunLayout
from forumtune.ranks import is_main_process

Paths = Callable[[Config, RunLayout], list[Path]]


@dataclass(frozen=True)
class Stage:
    name: str
    inputs: Paths
    outputs: Paths
    config_keys: tuple[str, ...]
    run: Callable[[Config, RunLayout, Console], Any]
    ignored_keys: tuple[str, ...] = ()  # keys under config_keys that do not change this stage's outputs


def _scrape(config: Config, layout: RunLayout, console: Console) -> Any:
    from forumtune.scrape.stage import run_scrape

    return run_scrape(config, layout.forum_store, console).as_dict()


def _index(config: Config, layout: RunLayout, console: Console) -> Any:
    from forumtune.index.stage import run_index

    return run_index(config, layout.root, console)


def needs_index(config: Config) -> bool:
    """Whether anything this config runs reads the search index (a run skips the stage otherwise)."""
    return config.uses_retrieval


def _build(config: Config, layout: RunLayout, console: Console) -> Any:
    from forumtune.data.build import run_build

    return run_build(
        config,
        layout.forum_store,
        layout.dataset.dir,
        console,
        index_paths=(layout.search_index, layout.vector_index),
    )


def _train(config: Config, layout: RunLayout, console: Console, restart: bool = False) -> Any:
    from forumtune.train.loop import run_train

    summary = run_train(config, layout.dataset.dir, layout.root, console, restart=restart)
    if is_main_process():
        layout.train_summary.write_text(json.dumps(summary, indent=2))
    return summary


def _train_then(config: Config, layout: RunLayout, console: Console, restart: bool = False) -> Any:
    """train.then: the second training, from the first one's adapter, in its own run dir."""
    from forumtune.train.loop import run_train

    second, second_layout = config.second_training(layout.adapter), layout.second
    assert second is not None and second_layout is not None  # the stage runs only with train.then
    summary = run_train(second, layout.dataset.dir, second_layout.root, console, restart=restart)
    if is_main_process():
        second_layout.train_summary.write_text(json.dumps(summary, indent=2))
    return summary


def _eval(config: Config, layout: RunLayout, console: Console) -> Any:
    from forumtune.eval.stage import run_eval

    return run_eval(config, layout.root, console)


def _merge(config: Config, layout: RunLayout, console: Console) -> Any:
    from forumtune.export.stage import run_merge

    return run_merge(config, layout.root, console)


def _export(config: Config, layout: RunLayout, console: Console, **options: Any) -> Any:
    from forumtune.export.stage import run_export

    return run_export(config, layout.root, console, **options)


def _dataset(config: Config, layout: RunLayout) -> list[Path]:
    return [layout.dataset.train, layout.dataset.eval, layout.dataset.stats]


def _second_outputs(config: Config, layout: RunLayout) -> list[Path]:
    second = layout.second
    return [] if second is None else [second.adapter_weights, second.metrics_csv, second.train_summary]


def _build_inputs(config: Config, layout: RunLayout) -> list[Path]:
    if config.build.input_file:
        return [config.build.input_file]
    return [layout.forum_store, *([layout.search_index] if config.build.pairing == "qa_retrieved" else [])]


def _eval_inputs(config: Config, layout: RunLayout) -> list[Path]:
    """The adapter(s) and log(s); with the retrieval check, the search index and the same-question groups."""
    checked = [layout.search_index, config.eval.same_questions] if config.checks_retrieval else []
    return [layout.adapter_weights, layout.metrics_csv, *_second_outputs(config, layout), *checked]


STAGES: list[Stage] = [  # name, inputs, outputs (both from forumtune.layout), config keys, entry function
    Stage("scrape", lambda c, paths: [], lambda c, paths: [paths.forum_store], ("scrape",), _scrape),
    Stage(
        "index",
        lambda c, paths: [paths.forum_store],
        lambda c, paths: [paths.search_index],
        ("index", "build.urls", "build.scrub_contacts"),
        _index,
    ),
    Stage("build", _build_inputs, _dataset, ("build", "model.base", "seed"), _build),
    Stage(
        "train",
        _dataset,
        lambda c, paths: [paths.adapter_weights, paths.metrics_csv, paths.train_summary],
        ("model", "lora", "train", "seed"),
        _train,
        ignored_keys=("train.then",),
    ),
    Stage(
        "train_then",
        lambda c, paths: [*_dataset(c, paths), paths.adapter_weights],
        _second_outputs,
        ("model", "lora", "train", "seed"),
        _train_then,
    ),
    Stage(
        "eval",
        _eval_inputs,
        lambda c, paths: [paths.eval_metrics, paths.loss_png, paths.report],
        ("eval",),
        _eval,
    ),
    Stage(
        "merge",
        lambda c, paths: [paths.final.adapter_weights],
        lambda c, paths: [paths.merged_config],
        ("merge",),
        _merge,
    ),
    Stage(
        "export", lambda c, paths: [paths.merged_config], lambda c, paths: [paths.gguf], ("export",), _export
    ),
]
STAGE_NAMES = [stage.name for stage in STAGES]


def get_stage(name: str) -> Stage:
    return next(stage for stage in STAGES if stage.name == name)


def _config_value(config: Config, dotted: str, ignored: tuple[str, ...] = ()) -> Any:
    """The key's value as JSON, without the keys below it that are marked NO_RERUN in config.py, nor the
    `ignored` ones directly below it (train.then for the first training)."""
    *parents, key = dotted.split(".")
    section: Any = config
    for name in parents:
        section = getattr(section, name)
    value = getattr(section, key)
    if isinstance(value, BaseModel):
        excluded = rerun_exclusions(type(value))
        excluded.update({k.removeprefix(f"{dotted}."): True for k in ignored if k.startswith(f"{dotted}.")})
        return value.model_dump(mode="json", exclude=excluded)
    return section.model_dump(mode="json", include={key})[key]


def stage_fingerprint(stage: Stage, config: Config) -> str:
    """A hash of the config keys the stage reads that change what it writes."""
    values = {key: _config_value(config, key, stage.ignored_keys) for key in stage.config_keys}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def not_needed(stage: Stage, config: Config) -> str | None:
    """Why this config has no use for the stage (the run skips it), or None when it does."""
    if stage.name in ("scrape", "index") and config.build.input_file:
        return f"not needed, the dataset comes from {config.build.input_file}"
    if stage.name == "index" and not needs_index(config):
        return "not needed (chat.retrieval is off, build.pairing is not qa_retrieved)"
    if stage.name == "train_then" and config.train.then is None:
        return "not needed (no train.then)"
    return None


def stale_reason(stage: Stage, config: Config, run_dir: Path) -> str | None:
    """Why the stage must run, or None when its outputs are up to date (or the config does not use it)."""
    if stage.name == "train_then" and not_needed(stage, config):
        return None
    layout = RunLayout.of(config, run_dir)
    outputs = stage.outputs(config, layout)
    missing = [p for p in outputs if not p.exists()]
    if missing:
        return f"{missing[0].relative_to(run_dir)} is missing"
    stamp = layout.stamp(stage.name)
    if not stamp.exists():
        return "its last run did not finish"
    if json.loads(stamp.read_text()).get("fingerprint") != stage_fingerprint(stage, config):
        return f"its settings ({', '.join(stage.config_keys)}) changed"
    inputs = [p for p in stage.inputs(config, layout) if p.exists()]
    if inputs and max(p.stat().st_mtime for p in inputs) > min(p.stat().st_mtime for p in outputs):
        return "its inputs are newer than its outputs"
    if stage.name == "scrape" and not _crawl_complete(layout.forum_store):
        return "the last crawl did not finish"
    return None


def _crawl_complete(store_path: Path) -> bool:
    from forumtune.forum_store import ForumStore

    with ForumStore(store_path) as store:
        return store.crawl_complete()


def prepare_run_dir(config: Config) -> RunLayout:
    layout = RunLayout.of(config)
    layout.root.mkdir(parents=True, exist_ok=True)
    if is_main_process():
        layout.config_file.write_text(dump_config(config))
    return layout


def run_stage(stage: Stage, config: Config, console: Console, **options: Any) -> Any:
    """Run one stage now, whatever its state, and stamp it as done with the current settings."""
    layout = prepare_run_dir(config)
    stamp = layout.stamp(stage.name)
    console.rule(f"[bold]{stage.name}")
    if is_main_process():  # a stage stopped halfway is not done, whatever outputs an earlier run left
        stamp.unlink(missing_ok=True)
    started = time.perf_counter()
    result = stage.run(config, layout, console, **options)
    if not is_main_process():
        return result
    stamp.parent.mkdir(exist_ok=True)
    stamp.write_text(
        json.dumps(
            {
                "fingerprint": stage_fingerprint(stage, config),
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
    )
    return result


def run_pipeline(
    config: Config, console: Console, *, force: bool = False, until: str | None = None, restart: bool = False
) -> list[str]:
    """Every stage in order, skipping those already done; returns the names of the stages that ran.
    Training resumes from its checkpoints; `restart` trains from step 0 (earlier checkpoints set aside)."""
    ran: list[str] = []
    run_dir = prepare_run_dir(config).root
    for stage in STAGES:
        restarting = restart and stage.name in ("train", "train_then")
        skip = not_needed(stage, config)
        reason = "forced" if force else "--restart" if restarting else stale_reason(stage, config, run_dir)
        if skip:
            console.print(f"[dim]{stage.name}: {skip}[/dim]")
        elif reason is None:
            console.print(f"[dim]{stage.name}: up to date, skipped[/dim]")
        else:
            console.print(f"{stage.name}: running ({reason})")
            run_stage(stage, config, console, **({"restart": True} if restarting else {}))
            ran.append(stage.name)
        if stage.name == until:
            break
    return ran


__all__ = [
    "STAGES",
    "STAGE_NAMES",
    "ForumtuneError",
    "get_stage",
    "run_pipeline",
    "run_stage",
    "stale_reason",
]
