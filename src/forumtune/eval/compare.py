"""`forumtune eval --compare A B`: two evaluated runs' curves, metrics and config differences in one report."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from forumtune.config import load_config
from forumtune.errors import EvalError
from forumtune.eval.plots import RunCurves, plot_loss_curves
from forumtune.eval.report import ALL_ARTIFACTS, embed_png, rate, read_json, render_html
from forumtune.layout import RunLayout
from forumtune.metrics_log import read_metrics

IGNORED_KEYS = {"name", "runs_dir"}


@dataclass
class EvaluatedRun:
    name: str
    run_dir: Path
    results: dict[str, Any]
    config: dict[str, Any]

    @property
    def paths(self) -> RunLayout:
        return RunLayout(self.run_dir)


def load_evaluated_run(path: Path) -> EvaluatedRun:
    """A run given as its run dir or as its YAML config; its eval stage must have run."""
    run_dir = load_config(path).run_dir if path.is_file() else path
    paths = RunLayout(run_dir)
    results = read_json(paths.eval_metrics)
    if not results:
        raise EvalError(
            f"{path}: no eval results at {paths.eval_metrics}; give a run dir (or its "
            "config) and run `forumtune eval CONFIG` for it first"
        )
    if "reference" not in results:
        raise EvalError(
            f"{run_dir}: its eval results come from an older forumtune; rerun `forumtune eval` for it"
        )
    config = yaml.safe_load(paths.config_file.read_text()) if paths.config_file.exists() else {}
    return EvaluatedRun(config.get("name", run_dir.name), run_dir, results, config)


def _flatten(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    flat_a, flat_b = _flatten(a), _flatten(b)
    keys = sorted((set(flat_a) | set(flat_b)) - IGNORED_KEYS)
    return [
        (key, flat_a.get(key, "–"), flat_b.get(key, "–"))
        for key in keys
        if flat_a.get(key) != flat_b.get(key)
    ]


def _train_facts(paths: RunLayout) -> dict[str, float | None]:
    speeds = [
        float(r["tokens_per_s"])
        for r in read_metrics(paths.metrics_csv)
        if r["split"] == "train" and r.get("tokens_per_s")
    ]
    summary = read_json(paths.train_summary)
    return {
        "steps": summary.get("steps"),
        "seconds": summary.get("seconds"),
        "tokens_per_s": statistics.median(speeds) if speeds else None,
    }


# label, how to read the value from a run, its format, whether lower is better (None: neither)
METRICS: list[tuple[str, Any, str, bool | None]] = [
    ("eval loss, base model", lambda r, t: r.results["base_eval_loss"], "{:.4f}", None),
    ("eval loss, fine-tuned", lambda r, t: r.results["tuned_eval_loss"], "{:.4f}", True),
    ("perplexity, fine-tuned", lambda r, t: r.results["tuned_perplexity"], "{:.2f}", True),
    (
        "eval loss drop from base",
        lambda r, t: r.results["base_eval_loss"] - r.results["tuned_eval_loss"],
        "{:.4f}",
        False,
    ),
    (
        "best checkpoint eval loss",
        lambda r, t: min((c["eval_loss"] for c in r.results["checkpoints"]), default=None),
        "{:.4f}",
        True,
    ),
    ("token F1, fine-tuned", lambda r, t: r.results["reference"]["tuned"]["token_f1"], "{:.3f}", False),
    ("ROUGE-L, fine-tuned", lambda r, t: r.results["reference"]["tuned"]["rouge_l"], "{:.3f}", False),
    (
        "embedding similarity, fine-tuned",
        lambda r, t: r.results["reference"]["tuned"]["embedding_similarity"],
        "{:.3f}",
        False,
    ),
    (
        "share of fine-tuned answers with an artifact",
        lambda r, t: (
            r.results["artifacts"]["tuned"]["any"] / r.results["samples"] if r.results["samples"] else None
        ),
        "{:.0%}",
        True,
    ),
    ("held-out examples", lambda r, t: r.results["eval_examples"], "{:d}", None),
    ("training steps", lambda r, t: t["steps"], "{:d}", None),
    ("training wall time (s)", lambda r, t: t["seconds"], "{:.1f}", None),
    ("training throughput (tokens/s, median)", lambda r, t: t["tokens_per_s"], "{:,.0f}", False),
]


def _cells(values: list[Any], fmt: str, lower_is_better: bool | None) -> list[dict[str, Any]]:
    cells = [{"value": v, "text": "–" if v is None else fmt.format(v), "css": ""} for v in values]
    if lower_is_better is not None and None not in values and values[0] != values[1]:
        best = values.index(min(values) if lower_is_better else max(values))
        cells[best]["css"] = "better"
    return cells


def compare_runs(path_a: Path, path_b: Path, out_dir: Path | None = None) -> Path:
    """Write compare-A-vs-B/report.html (and its loss.png) beside run A, or in out_dir; returns the report."""
    runs = [load_evaluated_run(path_a), load_evaluated_run(path_b)]
    if runs[0].name == runs[1].name:
        runs[0].name, runs[1].name = str(runs[0].run_dir), str(runs[1].run_dir)
    out_dir = out_dir or runs[0].run_dir.parent / f"compare-{runs[0].run_dir.name}-vs-{runs[1].run_dir.name}"
    curves = [RunCurves(r.name, r.paths.metrics_csv, r.results["checkpoints"]) for r in runs]
    loss_png = plot_loss_curves(curves, out_dir / "loss.png", title=f"{runs[0].name} vs {runs[1].name}: loss")
    facts = [_train_facts(r.paths) for r in runs]
    metrics = [
        {"label": label, "cells": _cells([read(r, t) for r, t in zip(runs, facts)], fmt, lower)}
        for label, read, fmt, lower in METRICS
    ]
    artifacts = [
        {
            "label": label,
            "cells": [rate(r.results["artifacts"]["tuned"][name], r.results["samples"]) for r in runs],
        }
        for name, label in ALL_ARTIFACTS.items()
    ]
    return render_html(
        "compare.html",
        out_dir / "report.html",
        names=[r.name for r in runs],
        paths=[str(r.run_dir) for r in runs],
        notes=comparability_notes(runs),
        metrics=metrics,
        loss_png=embed_png(loss_png),
        artifacts=artifacts,
        config_diff=config_differences(runs[0].config, runs[1].config),
    )


def comparability_notes(runs: list[EvaluatedRun]) -> list[str]:
    a, b = (r.results for r in runs)
    notes = []
    if (a["eval_examples"], a["eval_trained_tokens"]) != (b["eval_examples"], b["eval_trained_tokens"]):
        notes.append(
            f"The held-out splits differ ({a['eval_examples']} examples / {a['eval_trained_tokens']} "
            f"scored tokens vs {b['eval_examples']} / {b['eval_trained_tokens']}): their eval losses "
            "are not measured on the same text."
        )
    if a["generation"]["settings"] != b["generation"]["settings"]:
        notes.append(
            "The runs generated answers with different settings; artifact rates and reference "
            "metrics are less comparable."
        )
    return notes
