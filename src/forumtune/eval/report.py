"""report.html: one self-contained page (images embedded) that shows what the fine-tune changed."""

from __future__ import annotations

import base64
import json
import statistics
from pathlib import Path
from typing import Any

from jinja2 import DictLoader, Environment, StrictUndefined

from forumtune.config import Config, dump_config
from forumtune.eval.artifacts import ARTIFACT_LABELS, SHORT_LABELS
from forumtune.eval.reference import METRIC_LIMITS
from forumtune.eval.templates import TEMPLATES
from forumtune.layout import RunLayout
from forumtune.metrics_log import read_metrics
from forumtune.records import EvalSample

# The models an eval compares, unless its results name them (a run that trains twice has a third).
MODELS = (("base", "base model"), ("tuned", "fine-tuned"))
# What the training loop measures as peak memory on each device (train.step_log.peak_memory_mib). Runs whose
# train_summary.json does not name the device trained where eval runs (the same config and machine).
TRAIN_MEMORY_LABELS = {
    "cuda": "train: peak GPU memory (torch allocated)",
    "cpu": "train: peak process memory (resident, on the CPU)",
}
ALL_ARTIFACTS = {**ARTIFACT_LABELS, "any": "any of the above"}


def embed_png(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(template: str, out_html: Path, **context: Any) -> Path:
    """Fill one of TEMPLATES (run.html, compare.html) and write it; every value is HTML-escaped."""
    environment = Environment(loader=DictLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text(environment.get_template(template).render(**context), encoding="utf-8")
    return out_html


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def rate(count: int, total: int) -> str:
    return f"{count}/{total} ({100 * count / total:.0f}%)" if total else "–"


def compared(results: dict[str, Any]) -> list[tuple[str, str]]:
    """The models of this eval, side by side: (key, label)."""
    return [tuple(model) for model in results.get("models", MODELS)]  # type: ignore[misc]


def metric_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key, label in compared(results):
        reference = results["reference"][key]
        rows.append(
            {
                "key": key,
                "model": label,
                "eval_loss": results[f"{key}_eval_loss"],
                "perplexity": results[f"{key}_perplexity"],
                "token_f1": reference["token_f1"],
                "rouge_l": reference["rouge_l"],
                "embedding_similarity": reference["embedding_similarity"],
                "artifact_answers": rate(results["artifacts"][key]["any"], results["samples"]),
            }
        )
    return rows


def artifact_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    counts, total = results["artifacts"], results["samples"]
    keys = ["forum", *(key for key, _ in compared(results))]
    rows = []
    for name, label in ALL_ARTIFACTS.items():
        cells = {key: rate(counts[key][name], total) for key in keys}
        if name == "hit_token_limit":
            cells["forum"] = "n/a"
        base = counts["base"][name]
        classes = {
            key: "better" if counts[key][name] < base else "worse" if counts[key][name] > base else ""
            for key in keys[2:]
        }
        classes.update(forum="", base="")
        rows.append({"label": label, "cells": cells, "classes": classes})
    return rows


DECODING_CHECKS = (
    ("repeated_ngram", "repetition loops (a 4-word phrase 3+ times)"),
    ("hit_token_limit", "hit the token limit instead of ending"),
)


def preference_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The preferences table: each model's accuracies, and its implicit reward against its reference."""
    preferences = results.get("preferences")
    if not preferences:
        return []
    models = compared(results)
    labels = dict(models)
    rows = []
    for key, label in models:
        reference = {"base": None, "first": "base"}.get(key, labels.get("first", preferences["reference"]))
        rows.append(
            {
                "key": key,
                "model": label,
                "logprob": preferences.get(f"{key}_logprob_accuracy"),
                "per_token": preferences.get(f"{key}_per_token_accuracy"),
                "reward": preferences.get(f"{key}_reward_accuracy"),
                "margin": preferences.get(f"{key}_reward_margin", preferences["reward_margin"]),
                "reference": reference,
            }
        )
    return rows


def decoding_rows(results: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """Repetition loops and unended answers under plain greedy decoding and under eval's decoding settings."""
    counts, total, decoding = results["artifacts"], results["samples"], results["generation"]["decoding"]
    columns = [
        (key, f"{label}, {how}")
        for key, label in compared(results)
        for key, how in ((f"{key}_greedy", "plain greedy"), (key, decoding))
        if key in counts
    ]
    rows = [
        {"label": label, "cells": [rate(counts[key][name], total) for key, _ in columns]}
        for name, label in DECODING_CHECKS
    ]
    return [title for _, title in columns], rows


def config_summary(config: Config, steps: int | None) -> dict[str, str]:
    model, lora, train, build = config.model, config.lora, config.train, config.build
    quantization = (
        f"4-bit {model.quant_type}{' + double quant' if model.double_quant else ''}"
        if model.load_in_4bit
        else "none"
    )
    return {
        "base model": model.base,
        "quantization": quantization,
        "compute dtype": model.compute_dtype,
        "LoRA": f"r {lora.r}, alpha {lora.alpha}, dropout {lora.dropout}, targets {lora.target_modules}",
        "optimizer steps": str(steps if steps is not None else train.max_steps or f"{train.epochs} epochs"),
        "batch": f"{train.micro_batch_size} × {train.grad_accum_steps} accumulation",
        "learning rate": f"{train.learning_rate:g} ({train.lr_scheduler}, {train.warmup_steps} warmup steps)",
        "optimizer": train.optimizer,
        "max sequence length": str(build.max_seq_len),
        "chat template": build.chat_template or "the tokenizer's own",
        "seed": str(config.seed),
        **({"then (a second training)": yaml_line(train.then)} if train.then else {}),
    }


def yaml_line(values: dict[str, Any]) -> str:
    return ", ".join(f"{key}: {value}" for key, value in values.items())


def flatten_data_stats(stats: dict[str, Any]) -> dict[str, Any]:
    flat = {key: value for key, value in stats.items() if not isinstance(value, dict)}
    for key, value in stats.items():
        if isinstance(value, dict):
            flat[key] = ", ".join(f"{k} {v}" for k, v in value.items()) or "nothing"
    return flat


def _mib(value: float | None) -> str:
    return f"{value:,.0f} MiB" if value else "n/a"


def timing_rows(results: dict[str, Any], paths: RunLayout) -> list[tuple[str, str]]:
    rows = [(f"eval: {phase}", f"{seconds:.1f} s") for phase, seconds in results["timings_s"].items()]
    for key, label in compared(results):
        generation = results["generation"][key]
        if generation["seconds"] > 0:
            rows.append(
                (
                    f"eval: {label} generation speed",
                    f"{generation['tokens'] / generation['seconds']:,.1f} new tokens/s",
                )
            )
    peaks = results["peak_memory_mib"]
    eval_device = results.get("device", "cuda" if peaks["gpu_allocated"] is not None else "cpu")
    if eval_device == "cuda":
        rows.append(("eval: peak GPU memory (torch allocated)", _mib(peaks["gpu_allocated"])))
    rows.append(
        (
            f"eval: peak process memory (resident{', on the CPU' if eval_device == 'cpu' else ''})",
            _mib(peaks["process_resident"]),
        )
    )
    train_rows = [row for row in read_metrics(paths.metrics_csv) if row["split"] == "train"]
    speeds = [float(row["tokens_per_s"]) for row in train_rows if row.get("tokens_per_s")]
    memory = [float(row["peak_memory_mib"]) for row in train_rows if row.get("peak_memory_mib")]
    summary = read_json(paths.train_summary)
    if summary.get("seconds") is not None:
        rows.append(("train: wall time", f"{summary['seconds']:.1f} s for {summary.get('steps')} steps"))
    if speeds:
        rows.append(("train: median throughput", f"{statistics.median(speeds):,.0f} tokens/s"))
    train_device = "cuda" if summary.get("device", eval_device) == "cuda" else "cpu"
    rows.append((TRAIN_MEMORY_LABELS[train_device], _mib(max(memory, default=0.0))))
    for stamp in sorted(paths.stamps.glob("*.json")):
        if stamp.stem == "eval":  # the previous eval's time; this one's phases are above
            continue
        seconds = read_json(stamp).get("seconds")
        if seconds is not None:
            rows.append((f"stage {stamp.stem}: last run", f"{seconds:.1f} s"))
    return rows


def write_run_report(
    config: Config,
    paths: RunLayout,
    results: dict[str, Any],
    samples: list[EvalSample],
    loss_png: Path,
    note: str = "",
) -> Path:
    embedding = results.get("embedding_model")
    return render_html(
        "run.html",
        paths.report,
        name=config.name,
        base_model=config.model.base,
        note=note,
        eval_examples=results["eval_examples"],
        eval_trained_tokens=results["eval_trained_tokens"],
        metrics=metric_rows(results),
        has_embedding=embedding is not None,
        embedding_note=(
            f"Embedding similarity: cosine of mean-pooled sentence vectors from {embedding}."
            if embedding
            else "Embedding similarity: skipped (no local sentence-embedding model; "
            "see eval.embedding_model)."
        ),
        loss_png=embed_png(loss_png),
        checkpoints=results["checkpoints"],
        artifacts=artifact_rows(results),
        decoding=decoding_rows(results),
        preferences=results.get("preferences"),
        preference_rows=preference_rows(results),
        models=compared(results),
        retrieval=results.get("retrieval"),
        samples=samples,
        short_labels=SHORT_LABELS,
        generation_settings=results["generation"]["settings"],
        metric_limits=METRIC_LIMITS,
        data_stats=flatten_data_stats(read_json(paths.dataset.stats)),
        timings=timing_rows(results, paths),
        config_summary=config_summary(config, read_json(paths.train_summary).get("steps")),
        config_yaml=dump_config(config),
    )
