"""The `eval` stage: eval loss of base and fine-tuned, answers side by side, loss curves, report.html."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console

from forumtune.base_model import TINY_MODEL_NOTE, load_tokenizer
from forumtune.config import BUILTIN_TINY_MODEL, Config, dump_config
from forumtune.data.build import read_jsonl
from forumtune.errors import EvalError
from forumtune.eval.generate import generate_base_and_tuned, prompt_messages
from forumtune.eval.plots import plot_loss_curves
from forumtune.eval.report import embed_png, render_report
from forumtune.train.batches import mean_token_loss
from forumtune.train.loading import load_adapter_model, pick_device


def _held_out_questions(records: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """One record per held-out thread first, so the questions differ."""
    seen: set[int] = set()
    chosen = [r for r in records if not (r["thread_id"] in seen or seen.add(r["thread_id"]))]
    return chosen[:count]


def run_eval(config: Config, run_dir: Path, console: Console) -> dict[str, Any]:
    adapter_dir = run_dir / "adapter"
    if not (adapter_dir / "adapter_config.json").exists():
        raise EvalError(f"no adapter at {adapter_dir}: run `forumtune train` first")
    eval_records = read_jsonl(run_dir / "dataset" / "eval.jsonl")
    if not eval_records:
        raise EvalError("the eval split is empty; set build.eval_fraction above 0 and rebuild")
    device = pick_device(config.train.device)
    tokenizer = load_tokenizer(config.model.base, config.build.chat_template)
    model = load_adapter_model(config, adapter_dir, device)
    batch = config.train.micro_batch_size
    with model.disable_adapter():
        base_loss = mean_token_loss(model, eval_records, batch, tokenizer.pad_token_id, device)
    tuned_loss = mean_token_loss(model, eval_records, batch, tokenizer.pad_token_id, device)
    questions = _held_out_questions(eval_records, config.eval.num_samples)
    base_answers, tuned_answers = generate_base_and_tuned(
        model, tokenizer, [prompt_messages(r) for r in questions], max_new_tokens=config.eval.max_new_tokens,
        temperature=config.eval.temperature, seed=config.seed)
    samples = [{"question": prompt_messages(r)[-1]["content"], "reference": r["messages"][-1]["content"],
                "base": b["text"], "tuned": t["text"], "base_ended": b["ended"], "tuned_ended": t["ended"]}
               for r, b, t in zip(questions, base_answers, tuned_answers)]
    metrics = {"base_eval_loss": base_loss, "tuned_eval_loss": tuned_loss,
               "base_perplexity": math.exp(min(base_loss, 50)), "tuned_perplexity": math.exp(min(tuned_loss, 50)),
               "eval_examples": len(eval_records), "samples": len(samples)}
    eval_dir = run_dir / "eval"
    eval_dir.mkdir(exist_ok=True)
    (eval_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (eval_dir / "samples.jsonl").write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))
    loss_png = plot_loss_curves(run_dir / "metrics.csv", run_dir / "loss.png", title=f"{config.name}: loss")
    write_report(config, run_dir, metrics, samples, loss_png)
    console.print(f"eval loss: base {base_loss:.4f} → fine-tuned {tuned_loss:.4f}; report at {run_dir / 'report.html'}")
    return metrics


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def write_report(config: Config, run_dir: Path, metrics: dict[str, Any], samples: list[dict[str, Any]],
                 loss_png: Path) -> Path:
    settings = (f"greedy decoding, at most {config.eval.max_new_tokens} new tokens" if config.eval.temperature == 0
                else f"sampling at temperature {config.eval.temperature}, top-p 0.95, seed {config.seed}")
    data_stats = _read_json(run_dir / "dataset" / "stats.json")
    return render_report(
        run_dir / "report.html", name=config.name, base_model=config.model.base,
        note=TINY_MODEL_NOTE if config.model.base == BUILTIN_TINY_MODEL else "",
        loss_png=embed_png(loss_png),
        metrics=[{"model": "base", "loss": metrics["base_eval_loss"], "perplexity": metrics["base_perplexity"]},
                 {"model": "fine-tuned", "loss": metrics["tuned_eval_loss"],
                  "perplexity": metrics["tuned_perplexity"]}],
        data_stats=data_stats, samples=samples, generation_settings=settings,
        training=_read_json(run_dir / "train_summary.json"), config_yaml=dump_config(config),
    )
