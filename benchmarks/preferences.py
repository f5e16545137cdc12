"""Does preference tuning on the community's votes help? Held-out preference accuracy of SmolLM2-135M-Instruct:
base vs SFT (the demo's adapter) vs SFT + DPO (DPO from that adapter, on pairs of replies ranked by likes).

Runs the demo (examples/demo.yaml with build.preferences: scrape the bundled forum, build, SFT; finished
stages are reused), then DPO from its adapter in a second run dir, then ranks every held-out pair (threads
neither training saw) with each model:

- log-prob accuracy: the preferred answer's summed log-probability is the higher one (every model);
- reward accuracy: DPO's implicit reward beta × (log p_model − log p_reference) ranks it higher; the
  reference of SFT is the base, the reference of SFT + DPO is the SFT adapter (as in its training).

It also times the reference pass against a whole DPO micro-batch step (forumtune computes reference
log-probs per micro-batch; see train/objectives.py). Prints tables and writes JSON to benchmarks/results/.

    .venv/bin/python benchmarks/preferences.py                     # CPU, ~15 min on 2 cores
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from bench_common import environment, fmt, print_table, write_json
from rich.console import Console

from forumtune.base_model import load_tokenizer
from forumtune.config import Config, load_config
from forumtune.eval.preferences import preference_metrics
from forumtune.layout import RunLayout
from forumtune.metrics_log import read_metrics
from forumtune.models import load_adapter_model, pick_device
from forumtune.pipeline import run_pipeline
from forumtune.records import read_jsonl
from forumtune.train.loading import load_for_training
from forumtune.train.objectives import objective_for

ROOT = Path(__file__).resolve().parent.parent
# DPO on the demo: one epoch of the training pairs, 4 pairs a step
DPO_SETTINGS = ["train.method=dpo", "train.beta=0.1", "train.micro_batch_size=2", "train.grad_accum_steps=2",
                "train.learning_rate=5.0e-4", "train.warmup_steps=3", "train.lr_scheduler=cosine",
                "train.epochs=1", "train.max_steps=null", "train.eval_every=10", "train.save_every=20",
                "train.final_adapter=last"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "demo.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="for both runs")
    parser.add_argument("--dpo-set", dest="dpo_overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="for the DPO run only (after DPO_SETTINGS)")
    parser.add_argument("--runs-dir", type=Path, default=Path("/tmp/forumtune-preferences"))
    parser.add_argument("--timing-batches", type=int, default=4, help="micro-batches timed for the reference cost")
    parser.add_argument("--tag", default="cpu", help="names the result file: preferences-TAG.json")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    return parser.parse_args()


def configs(args: argparse.Namespace) -> tuple[Config, Config]:
    common = [*args.overrides, f"runs_dir={args.runs_dir}", "build.preferences=true"]
    sft = load_config(args.config, common)
    adapter = RunLayout.of(sft).adapter
    dpo = load_config(args.config, [*common, f"name={sft.name}-dpo", *DPO_SETTINGS, f"train.init_adapter={adapter}",
                                    *args.dpo_overrides])
    return sft, dpo


def rank_pairs(config: Config, rows: list[dict[str, Any]]) -> dict[str, Any]:
    device = pick_device(config.eval.device, key="eval.device")
    tokenizer = load_tokenizer(config.model.base, config.build.chat_template)
    model = load_adapter_model(config.model, RunLayout.of(config).adapter, device)
    return preference_metrics(model, rows, config, config.eval.loss_batch_size or 4, tokenizer.pad_token_id, device)


def reference_cost(config: Config, batches: int) -> dict[str, float]:
    """Seconds of the reference pass alone and of a whole DPO micro-batch (reference + policy forward +
    backward), on the first training pairs, after one warm-up batch."""
    device = pick_device(config.train.device)
    tokenizer = load_tokenizer(config.model.base, config.build.chat_template)
    model = load_for_training(config, device)
    model.train()
    objective = objective_for(config.train)
    rows = read_jsonl(RunLayout.of(config).dataset.preferences("train"))
    size = config.train.micro_batch_size
    reference_s, step_s = [], []
    from forumtune.preference_batches import reference_weights, sequence_log_probs

    for number in range(batches + 1):
        batch = objective.collate(rows[number * size: (number + 1) * size], tokenizer.pad_token_id, device)
        started = time.perf_counter()
        with reference_weights(model):
            sequence_log_probs(model, batch)
        middle = time.perf_counter()
        objective.loss(model, batch, objective.count(batch)).backward()
        model.zero_grad(set_to_none=True)
        if number:  # the first is a warm-up
            reference_s.append(middle - started)
            step_s.append(time.perf_counter() - middle)
    reference, step = statistics.fmean(reference_s), statistics.fmean(step_s)
    return {"reference_pass_s": reference, "dpo_micro_batch_s": step, "reference_share": reference / step,
            "batches": batches, "pairs_per_batch": size}


def main() -> int:
    args = parse_args()
    sft, dpo = configs(args)
    console = Console(stderr=True)
    timings = {}
    for config in (sft, dpo):
        started = time.perf_counter()
        run_pipeline(config, console, until="train")
        timings[config.name] = time.perf_counter() - started
    held_out = [r for r in read_jsonl(RunLayout.of(sft).dataset.preferences("eval")) if "chosen" in r]
    train_pairs = [r for r in read_jsonl(RunLayout.of(sft).dataset.preferences("train")) if "chosen" in r]
    results: dict[str, Any] = {"held_out": {}, "train": {}}
    for split, rows in (("held_out", held_out), ("train", train_pairs)):
        results[split]["sft"] = rank_pairs(sft, rows)
        results[split]["dpo"] = rank_pairs(dpo, rows)
    results["reference_cost"] = reference_cost(dpo, args.timing_batches)
    dpo_curve = [(int(r["step"]), r["split"], float(r["loss"])) for r in read_metrics(RunLayout.of(dpo).metrics_csv)]
    payload = {"benchmark": "preferences", "environment": environment(), "config": str(args.config),
               "overrides": args.overrides, "dpo_settings": [*DPO_SETTINGS, *args.dpo_overrides],
               "held_out_pairs": len(held_out), "train_pairs": len(train_pairs), "results": results,
               "dpo_loss_curve": dpo_curve, "stage_seconds": timings, "cpu_threads": torch.get_num_threads()}
    for split, count in (("held_out", len(held_out)), ("train", len(train_pairs))):
        sft_m, dpo_m = results[split]["sft"], results[split]["dpo"]
        print(f"\n{split.replace('_', '-')} pairs: {count}")
        payload[f"table_{split}"] = print_table(
            ["model", "log-prob accuracy", "reward accuracy", "reference", "reward margin"],
            [["base", f"{sft_m['base_logprob_accuracy']:.1%}", "-", "-", "-"],
             ["SFT", f"{sft_m['tuned_logprob_accuracy']:.1%}", f"{sft_m['tuned_reward_accuracy']:.1%}", "base",
              fmt(sft_m["reward_margin"], 3)],
             ["SFT + DPO", f"{dpo_m['tuned_logprob_accuracy']:.1%}", f"{dpo_m['tuned_reward_accuracy']:.1%}", "SFT",
              fmt(dpo_m["reward_margin"], 3)]])
    cost = results["reference_cost"]
    print(f"\nreference pass {cost['reference_pass_s']:.2f} s of a {cost['dpo_micro_batch_s']:.2f} s DPO micro-batch "
          f"({cost['reference_share']:.0%}); stages: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    write_json(args.out_dir / f"preferences-{args.tag}.json", payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
