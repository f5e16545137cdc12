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

    .venv/bin/python benchmarks/preferences.py     # CPU: the demo SFT (~6 min on 2 idle cores), DPO, ranking
"""

from __future__ import annotations

import argparse
import json
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
from forumtune.eval.preferences import pair_log_probs, share_above
from forumtune.layout import RunLayout
from forumtune.metrics_log import read_metrics
from forumtune.models import load_adapter_model, pick_device
from forumtune.pipeline import run_pipeline
from forumtune.preference_batches import REFERENCE_ADAPTER, reference_weights, sequence_log_probs
from forumtune.records import IGNORE_INDEX, read_jsonl
from forumtune.train.loading import load_for_training
from forumtune.train.objectives import objective_for

ROOT = Path(__file__).resolve().parent.parent
# DPO on the demo, sized for 2 shared CPU cores: 16 steps of 4 pairs (64 of the 149 training pairs), one eval at the end
DPO_SETTINGS = [
    "train.method=dpo",
    "train.beta=0.1",
    "train.micro_batch_size=2",
    "train.grad_accum_steps=2",
    "train.learning_rate=5.0e-4",
    "train.warmup_steps=2",
    "train.lr_scheduler=cosine",
    "train.max_steps=16",
    "train.eval_every=100",
    "train.save_every=100",
    "train.final_adapter=last",
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "demo.yaml")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="for both runs"
    )
    parser.add_argument(
        "--dpo-set",
        dest="dpo_overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="for the DPO run only (after DPO_SETTINGS)",
    )
    parser.add_argument("--runs-dir", type=Path, default=Path("/tmp/forumtune-preferences"))
    parser.add_argument(
        "--timing-batches", type=int, default=2, help="micro-batches timed for the reference cost"
    )
    parser.add_argument("--train-pairs", type=int, default=0, help="also rank this many training pairs")
    parser.add_argument("--tag", default="cpu", help="names the result file: preferences-TAG.json")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    return parser.parse_args()


def configs(args: argparse.Namespace) -> tuple[Config, Config]:
    common = [*args.overrides, f"runs_dir={args.runs_dir}", "build.preferences=true"]
    sft = load_config(args.config, common)
    adapter = RunLayout.of(sft).adapter
    dpo = load_config(
        args.config,
        [
            *common,
            f"name={sft.name}-dpo",
            *DPO_SETTINGS,
            f"train.init_adapter={adapter}",
            *args.dpo_overrides,
        ],
    )
    return sft, dpo


def answer_tokens(labels: list[int]) -> int:
    return sum(label != IGNORE_INDEX for label in labels[1:])


@torch.no_grad()
def rank_pairs(sft: Config, dpo: Config, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Every pair's log-probs under base, SFT and SFT + DPO, one model load: the DPO adapter active, the SFT
    adapter beside it as DPO's reference, the base with both off."""
    device = pick_device(sft.eval.device, key="eval.device")
    tokenizer = load_tokenizer(sft.model.base, sft.build.chat_template)
    model = load_adapter_model(dpo.model, RunLayout.of(dpo).adapter, device)
    model.load_adapter(str(RunLayout.of(sft).adapter), adapter_name=REFERENCE_ADAPTER)
    size, pad = sft.eval.loss_batch_size or 4, tokenizer.pad_token_id
    model.eval()
    with model.disable_adapter():
        base = pair_log_probs(model, rows, size, pad, device)
    with reference_weights(model):
        tuned = pair_log_probs(model, rows, size, pad, device)
    dpo_logps = pair_log_probs(model, rows, size, pad, device)
    beta = dpo.train.beta

    def rewards(policy: tuple[list[float], list[float]], reference: tuple[list[float], list[float]]):
        chosen = [beta * (p - r) for p, r in zip(policy[0], reference[0])]
        rejected = [beta * (p - r) for p, r in zip(policy[1], reference[1])]
        return {
            "reward_accuracy": share_above(chosen, rejected),
            "reward_margin": statistics.fmean(c - r for c, r in zip(chosen, rejected)),
        }

    tokens = (
        [answer_tokens(r["chosen_labels"]) for r in rows],
        [answer_tokens(r["rejected_labels"]) for r in rows],
    )

    def per_token(logps: tuple[list[float], list[float]]) -> float:
        """The same ranking by mean log-prob per answer token: summed log-probs favour the shorter answer."""
        return share_above(
            [lp / n for lp, n in zip(logps[0], tokens[0])], [lp / n for lp, n in zip(logps[1], tokens[1])]
        )

    return {
        "pairs": len(rows),
        "beta": beta,
        "chosen_longer": share_above(*tokens),
        "base": {"logprob_accuracy": share_above(*base), "per_token_accuracy": per_token(base)},
        "sft": {
            "logprob_accuracy": share_above(*tuned),
            "per_token_accuracy": per_token(tuned),
            "reference": "base",
            **rewards(tuned, base),
        },
        "dpo": {
            "logprob_accuracy": share_above(*dpo_logps),
            "per_token_accuracy": per_token(dpo_logps),
            "reference": "SFT",
            **rewards(dpo_logps, tuned),
        },
        "log_probs": {"base": base, "sft": tuned, "dpo": dpo_logps},
    }


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
    for number in range(batches + 1):
        batch = objective.collate(rows[number * size : (number + 1) * size], tokenizer.pad_token_id, device)
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
    return {
        "reference_pass_s": reference,
        "dpo_micro_batch_s": step,
        "reference_share": reference / step,
        "batches": batches,
        "pairs_per_batch": size,
    }


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


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
    results: dict[str, Any] = {"held_out": rank_pairs(sft, dpo, held_out)}
    if args.train_pairs:
        results["train"] = rank_pairs(sft, dpo, train_pairs[: args.train_pairs])
    results["reference_cost"] = reference_cost(dpo, args.timing_batches)
    dpo_curve = [
        (int(r["step"]), r["split"], float(r["loss"])) for r in read_metrics(RunLayout.of(dpo).metrics_csv)
    ]
    payload = {
        "benchmark": "preferences",
        "environment": environment(),
        "config": str(args.config),
        "overrides": args.overrides,
        "dpo_settings": [*DPO_SETTINGS, *args.dpo_overrides],
        "held_out_pairs": len(held_out),
        "train_pairs": len(train_pairs),
        "results": results,
        "dpo_summary": read_json(RunLayout.of(dpo).train_summary),
        "dpo_loss_curve": dpo_curve,
        "stage_seconds": timings,
        "cpu_threads": torch.get_num_threads(),
    }
    for split in ("held_out", "train"):
        if split not in results:
            continue
        ranked = results[split]
        print(
            f"\n{split.replace('_', '-')} pairs: {ranked['pairs']} (chosen answer the longer: "
            f"{ranked['chosen_longer']:.0%})"
        )
        payload[f"table_{split}"] = print_table(
            [
                "model",
                "log-prob accuracy",
                "per-token log-prob accuracy",
                "reward accuracy",
                "reference",
                "reward margin",
            ],
            [
                [
                    "base",
                    f"{ranked['base']['logprob_accuracy']:.1%}",
                    f"{ranked['base']['per_token_accuracy']:.1%}",
                    "-",
                    "-",
                    "-",
                ],
                *[
                    [
                        name,
                        f"{ranked[key]['logprob_accuracy']:.1%}",
                        f"{ranked[key]['per_token_accuracy']:.1%}",
                        f"{ranked[key]['reward_accuracy']:.1%}",
                        ranked[key]["reference"],
                        fmt(ranked[key]["reward_margin"], 3),
                    ]
                    for key, name in (("sft", "SFT"), ("dpo", "SFT + DPO"))
                ],
            ],
        )
    cost = results["reference_cost"]
    print(
        f"\nreference pass {cost['reference_pass_s']:.2f} s of a {cost['dpo_micro_batch_s']:.2f} s DPO micro-batch "
        f"({cost['reference_share']:.0%}); stages: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
    )
    write_json(args.out_dir / f"preferences-{args.tag}.json", payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
