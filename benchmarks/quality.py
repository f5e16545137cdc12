"""Does the fine-tune help? SmolLM2-135M-Instruct, base vs fine-tuned on the demo forum's held-out threads.

Trains the demo (examples/demo.yaml: scrape the bundled forum, build, train; finished stages are reused),
then measures on the held-out split: eval loss per answer token, the share of answers that end with EOS
before the token limit, the artifact rate (speaker tags, forum boilerplate, template tokens: the checks of
forumtune.eval.artifacts), the repetition-loop rate under plain greedy decoding and under eval's decoding
settings, and prints answers side by side. Prints tables and writes JSON to benchmarks/results/.

    .venv/bin/python benchmarks/quality.py                                   # the CPU run of the demo
    .venv/bin/python benchmarks/quality.py --set train.fast_path=true --set train.device=cuda \\
        --tag gpu-fast                                                       # on a GPU, forumtune's fast path
    .venv/bin/python benchmarks/quality.py --set train.fast_path=false --set train.device=cuda --tag gpu-plain \\
        --baseline benchmarks/results/quality-gpu-fast.json                  # plain path; loss curves side by side
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench_common import environment, fmt, print_table, write_json
from rich.console import Console

from forumtune.base_model import load_tokenizer
from forumtune.config import load_config
from forumtune.eval.artifacts import check_model_answer
from forumtune.eval.generate import GenerationSettings, generate_answers, prompt_messages
from forumtune.eval.losses import base_and_tuned_losses
from forumtune.eval.stage import answer_questions, generation_settings, held_out_questions
from forumtune.eval.timing import PhaseTimer
from forumtune.layout import RunLayout
from forumtune.metrics_log import read_metrics
from forumtune.models import load_adapter_model, pick_device
from forumtune.pipeline import run_pipeline
from forumtune.records import ModelAnswer, read_jsonl
from forumtune.train.loading import uses_fast_path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ("speaker_tag", "forum_boilerplate", "template_token")  # what the forum's noise looks like
MODELS = (("base", "base"), ("tuned", "fine-tuned"))
# Decoding settings compared by --sweep-questions: (temperature, repetition_penalty, no_repeat_ngram_size).
DECODING_SWEEP = [
    (0.0, 1.0, 0),
    (0.0, 1.1, 0),
    (0.0, 1.2, 0),
    (0.0, 1.3, 0),
    (0.0, 1.0, 4),
    (0.7, 1.0, 0),
    (0.7, 1.2, 0),
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "demo.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=Path("/tmp/forumtune-quality"),
        help="where the run directory goes (finished stages there are reused)",
    )
    parser.add_argument("--samples", type=int, default=8, help="held-out questions answered")
    parser.add_argument(
        "--tag", default=None, help="names the result file: quality-TAG.json (default cpu/gpu)"
    )
    parser.add_argument(
        "--baseline", type=Path, help="an earlier result file whose loss curve to print beside"
    )
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument(
        "--sweep-questions",
        type=int,
        default=0,
        help="also decode this many distinct questions (held-out threads first, then training "
        "threads) with the fine-tune under each setting of DECODING_SWEEP",
    )
    return parser.parse_args()


def rates(answers: list[ModelAnswer]) -> dict[str, float]:
    """One model's answers (under one decoding): how many ended, showed an artifact or looped; their length."""
    total = len(answers)
    return {
        "ended_with_eos": sum(a.ended_with_eos for a in answers) / total,
        "artifacts": sum(any(name in a.flags for name in ARTIFACTS) for a in answers) / total,
        "repetition_loops": sum("repeated_ngram" in a.flags for a in answers) / total,
        "mean_tokens": sum(a.tokens for a in answers) / total,
    }


def loss_curve(run_dir: Path) -> dict[str, list[list[float]]]:
    rows = read_metrics(RunLayout(run_dir).metrics_csv)
    return {
        split: [[int(r["step"]), float(r["loss"])] for r in rows if r["split"] == split]
        for split in ("train", "eval")
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    config = load_config(
        args.config, [*args.overrides, f"runs_dir={args.runs_dir}", f"eval.num_samples={args.samples}"]
    )
    started = time.perf_counter()
    run_pipeline(config, Console(stderr=True), until="train")
    trained_s = time.perf_counter() - started
    run_dir, device = config.run_dir, pick_device(config.train.device)
    timer = PhaseTimer(device)
    tokenizer, model, records, base_loss, tuned_loss = held_out_losses(config, timer)
    questions = held_out_questions(records, args.samples)
    settings = generation_settings(config)
    samples, _ = answer_questions(model, tokenizer, questions, settings, timer, greedy_baseline=True)
    sweep = (
        decoding_sweep(model, tokenizer, run_dir, settings, args.sweep_questions)
        if args.sweep_questions
        else []
    )
    summary = json.loads(RunLayout(run_dir).train_summary.read_text())
    return {
        "config": str(args.config),
        "overrides": args.overrides,
        "device": str(device),
        "fast_path": uses_fast_path(config, device),
        "environment": environment(),
        "eval_examples": len(records),
        "eval_threads": len({r["thread_id"] for r in records}),
        "eval_loss": {"base": base_loss, "tuned": tuned_loss, "drop": base_loss - tuned_loss},
        "decoding": {
            "configured": settings.decoding(),
            "greedy": settings.plain_greedy().decoding(),
            "max_new_tokens": settings.max_new_tokens,
        },
        "rates": {
            f"{key}_{how}": rates(
                [s.answers[key if how == "configured" else f"{key}_greedy"] for s in samples]
            )
            for key, _ in MODELS
            for how in ("greedy", "configured")
        },
        "train": {
            "steps": summary.get("steps"),
            "seconds": summary.get("seconds"),
            "pipeline_seconds_until_train": round(trained_s, 1),
        },
        "loss_curve": loss_curve(run_dir),
        "timings_s": timer.seconds,
        "samples": [
            {
                "question": s.question,
                "forum": s.reference,
                **{key: s.answers[key].text for key in ("base", "tuned", "base_greedy", "tuned_greedy")},
            }
            for s in samples
        ],
        "prompt_turns": [len(prompt_messages(q)) for q in questions],
        "decoding_sweep": sweep,
    }


def held_out_losses(config, timer: PhaseTimer) -> tuple[Any, Any, list[dict[str, Any]], float, float]:
    """The trained adapter loaded as eval loads it, and the eval loss per answer token of the base and
    the fine-tune on the held-out split: (tokenizer, model, records, base loss, tuned loss)."""
    run_dir, device = config.run_dir, pick_device(config.train.device)
    with timer.phase("load"):
        tokenizer = load_tokenizer(config.model.base, config.build.chat_template)
        model = load_adapter_model(config.model, RunLayout.of(config, run_dir).adapter, device)
    records = read_jsonl(RunLayout(run_dir).dataset.eval)
    with timer.phase("eval loss"):
        base_loss, tuned_loss = base_and_tuned_losses(
            model, records, config.train.micro_batch_size, tokenizer.pad_token_id, device
        )
    return tokenizer, model, records, base_loss, tuned_loss


def distinct_questions(run_dir: Path, count: int) -> list[list[dict[str, str]]]:
    """Prompts of different questions: the held-out threads' first, then the training threads'."""
    prompts: dict[str, list[dict[str, str]]] = {}
    for split in ("eval", "train"):
        for record in read_jsonl(RunLayout(run_dir).dataset.split(split)):
            prompt = prompt_messages(record)
            prompts.setdefault(prompt[-1]["content"], prompt)
    return list(prompts.values())[:count]


def decoding_sweep(
    model, tokenizer, run_dir: Path, settings: GenerationSettings, count: int
) -> list[dict[str, Any]]:
    """The fine-tune's repetition loops and unended answers under each decoding setting of DECODING_SWEEP."""
    prompts = distinct_questions(run_dir, count)
    rows = []
    for temperature, penalty, ngram in DECODING_SWEEP:
        trial = replace(
            settings, temperature=temperature, repetition_penalty=penalty, no_repeat_ngram_size=ngram
        )
        answers = generate_answers(model, tokenizer, prompts, trial)
        for answer in answers:
            answer.flags = check_model_answer(answer)
        measured = rates(answers)
        rows.append(
            {
                "decoding": trial.decoding(),
                "questions": len(prompts),
                **{name: measured[name] for name in ("repetition_loops", "ended_with_eos", "mean_tokens")},
            }
        )
        print(f"  sweep: {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def print_report(result: dict[str, Any], baseline: dict[str, Any] | None) -> None:
    loss = result["eval_loss"]
    print(
        f"\nheld-out: {result['eval_examples']} examples from {result['eval_threads']} threads; device "
        f"{result['device']}, {'fast path' if result['fast_path'] else 'plain path'}"
    )
    print_table(
        ["model", "eval loss / answer token"],
        [
            ["base", fmt(loss["base"], 4)],
            ["fine-tuned", fmt(loss["tuned"], 4)],
            ["drop", fmt(loss["drop"], 4)],
        ],
    )
    decoding = result["decoding"]
    print(
        f"\nanswers to {len(result['samples'])} held-out questions, at most {decoding['max_new_tokens']} tokens"
    )
    rows = []
    for key, label in MODELS:
        for how in ("greedy", "configured"):
            r = result["rates"][f"{key}_{how}"]
            rows.append(
                [
                    label,
                    decoding[how],
                    f"{r['ended_with_eos']:.0%}",
                    f"{r['artifacts']:.0%}",
                    f"{r['repetition_loops']:.0%}",
                    fmt(r["mean_tokens"], 1),
                ]
            )
    print_table(["model", "decoding", "ended with EOS", "artifacts", "repetition loops", "mean tokens"], rows)
    print("\nloss curve (train loss per optimizer step" + (", beside the baseline's)" if baseline else ")"))
    other = {step: value for step, value in baseline["loss_curve"]["train"]} if baseline else {}
    curve_rows = [
        [
            step,
            fmt(value, 4),
            *(
                [fmt(other.get(step), 4), fmt(value - other[step], 4) if step in other else "-"]
                if baseline
                else []
            ),
        ]
        for step, value in result["loss_curve"]["train"]
    ]
    print_table(["step", "loss", *(["baseline", "difference"] if baseline else [])], curve_rows)
    if result["decoding_sweep"]:
        print(f"\nthe fine-tune's decoding, {result['decoding_sweep'][0]['questions']} distinct questions")
        print_table(
            ["decoding", "repetition loops", "ended with EOS", "mean tokens"],
            [
                [
                    row["decoding"],
                    f"{row['repetition_loops']:.0%}",
                    f"{row['ended_with_eos']:.0%}",
                    fmt(row["mean_tokens"], 1),
                ]
                for row in result["decoding_sweep"]
            ],
        )
    for index, sample in enumerate(result["samples"], 1):
        print(f"\n--- {index}. {sample['question'][:300]}")
        for key, label in (
            ("forum", "forum"),
            ("base", "base"),
            ("tuned", "fine-tuned"),
            ("tuned_greedy", "fine-tuned, plain greedy"),
        ):
            print(f"  [{label}] {sample[key][:400]}")


def main() -> None:
    args = parse_args()
    baseline = (
        json.loads(args.baseline.read_text()) if args.baseline else None
    )  # before the long run, not after
    result = measure(args)
    tag = args.tag or ("gpu" if result["device"].startswith("cuda") else "cpu")
    out = args.out_dir / f"quality-{tag}.json"
    write_json(out, result)
    print_report(result, baseline)
    print(f"\nwrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
