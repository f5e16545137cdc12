#!/usr/bin/env python
"""DPO throughput and memory on a Mistral-7B-shaped model: forumtune's trainer (train.method: dpo) beside
TRL's DPOTrainer + peft + bitsandbytes, the same shape in one invocation.

Both stacks train the same thing: the random-weight model (written once to --model-dir) in NF4 + double
quant with bf16 compute, LoRA r=16 alpha=32 dropout 0 on the 7 projections, gradient checkpointing, paged
8-bit AdamW (lr 2e-4, constant, clip 1.0), DPO's sigmoid loss with the same beta, the reference being the
same weights with the adapter switched off (TRL's default for a peft model; forumtune's without
train.init_adapter), the reference log-probs computed per batch. A batch is --pairs pairs, each a prompt
of --prompt-len tokens followed by a chosen and a rejected answer, both rows --seq tokens long (default
1 × (1024 + 1024) tokens). Random token ids: the shape is what costs.

Each stack runs in its own Python process under an allocator cap (default 8 GiB); an OOM is recorded and
the run repeated uncapped (unless --no-uncapped-on-oom) so that each stack has a speed figure. Memory is
counted as benchmarks/train_throughput.py counts it: the allocator's peaks, and the process's whole use
of the card as the card sees it (bench_common.DeviceUse), judged against --budget-gib (7.6: what an 8 GB
card leaves to a process). tokens/s is the median over the steps after --warmup, a step's tokens being
the real tokens of its chosen and rejected rows.

Stacks:
  forumtune          forumtune.train.loop.run_train, train.method dpo, train.gradient_checkpointing true
                     (the default), the rest of forumtune's defaults (fast path; CUDA graphs are off for
                     preference methods)
  forumtune_offload  the same with train.gradient_checkpointing offload (layer inputs wait in CPU memory)
  forumtune_full_logits  the same as forumtune, with the answer log-probs read from the model's full logits
                     instead of the chunked head (kernels/answer_log_probs.py): what the chunked head saves
  trl                trl.DPOTrainer(model=<the NF4 model>, peft_config=LoraConfig(...)) with DPOConfig(
                     loss_type sigmoid, bf16, gradient_checkpointing (non-reentrant), optim paged_adamw_8bit,
                     precompute_ref_log_probs false); its own collator and fused log-prob head
  trl_offload        the same with DPOConfig(activation_offloading=True)

The trl stacks need packages forumtune does not: `--requirements` prints them (they are checked, and
what is missing named, before any model is built).

Usage (GPU):
  python benchmarks/preference_throughput.py --out preference_throughput.json
  python benchmarks/preference_throughput.py --stacks forumtune,forumtune_full_logits,trl --out a.json
                                                        # what the chunked answer log-probs save
  python benchmarks/preference_throughput.py --report a.json            # the table of earlier results
CPU logic check (2-4 minutes on 2 busy cores): python benchmarks/preference_throughput.py --preset tiny \
  --cap-gib 0 --seq 64 --prompt-len 16 --warmup 1 --steps 2 --model-dir /tmp/tiny-model --work-dir /tmp/tiny-dpo
  (on a CPU, TRL's log-prob kernel runs in Triton's interpreter, so its speed there means nothing, and
  trl_offload, which needs an accelerator, is skipped)
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common as bc
import train_throughput as tt

STACKS = ("forumtune", "forumtune_offload", "forumtune_full_logits", "trl", "trl_offload")
BETA = 0.1
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# (pip requirement, module it installs): what the trl stacks import beyond forumtune's own dependencies
TRL_REQUIREMENTS = (
    ("trl==1.15.0", "trl"),
    ("datasets>=4.7.0", "datasets"),  # trl 1.15 imports it at load (and with it pyarrow, pandas, dill)
    ("accelerate>=1.4.0", "accelerate"),
    ("jinja2", "jinja2"),
)


# =============================================================================== worker side


def write_pairs(
    dataset_dir: Path, vocab: int, prompt_len: int, seq: int, count: int, seed: int = 1234
) -> Path:
    """dataset/preferences_train.jsonl in forumtune's format (records.PreferenceRow): one random prompt per
    pair, a chosen and a rejected answer of seq − prompt_len random tokens each, the prompt masked in the
    labels; an empty eval split, so that neither stack evaluates."""
    dataset_dir.mkdir(parents=True, exist_ok=True)
    marker = dataset_dir / "spec.json"
    wanted = {"vocab": vocab, "prompt_len": prompt_len, "seq": seq, "count": count, "seed": seed}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return dataset_dir
    rng = random.Random(seed)

    def ids(n: int) -> list[int]:
        return [rng.randrange(bc.FIRST_ORDINARY_ID, vocab) for _ in range(n)]

    masked = [-100] * prompt_len
    with (dataset_dir / "preferences_train.jsonl").open("w") as handle:
        for number in range(count):
            prompt, chosen, rejected = ids(prompt_len), ids(seq - prompt_len), ids(seq - prompt_len)
            row = {
                "thread_id": number,
                "prompt": [{"role": "user", "content": f"synthetic {number}"}],
                "chosen": "",
                "rejected": "",
                "chosen_input_ids": prompt + chosen,
                "chosen_labels": masked + chosen,
                "rejected_input_ids": prompt + rejected,
                "rejected_labels": masked + rejected,
            }
            handle.write(json.dumps(row) + "\n")
    (dataset_dir / "preferences_eval.jsonl").write_text("")
    marker.write_text(json.dumps(wanted))
    return dataset_dir


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def run_forumtune(spec: dict[str, Any]) -> dict[str, Any]:
    """forumtune's own training entry point on the pairs, with train.method dpo; the steps' times and
    tokens from the run's metrics.csv."""
    from rich.console import Console

    from forumtune.config import load_config
    from forumtune.train.loop import run_train
    from forumtune.train.plan import plan_memory

    work = Path(spec["work_dir"])
    checkpointing = "offload" if spec["stack"] == "forumtune_offload" else True
    if spec["stack"] == "forumtune_full_logits":
        from forumtune import preference_batches

        preference_batches.plain_output_head = lambda model: None  # as if no head allowed the chunked path
    config = load_config(
        bc.write_forumtune_config(
            work / "config.yaml",
            model_dir=Path(spec["model_dir"]),
            runs_dir=work / "runs",
            batch=spec["pairs"],
            seq_len=spec["seq"],
            steps=spec["warmup"] + spec["steps"],
            gradient_checkpointing=checkpointing,
            compute_dtype="bfloat16" if _cuda() else "float32",
            device="cuda" if _cuda() else "cpu",
            seed=tt.SEED,
            learning_rate=tt.LEARNING_RATE,
            train_extra={"method": "dpo", "beta": BETA, "dpo_label_smoothing": 0.0},
        )
    )
    plan = plan_memory(config, 8.0, usable_gib=spec["budget_gib"])
    run_dir = work / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    tt.sample_after_each_step()  # the card's memory after each step: samples of the whole-process peak
    started = time.perf_counter()
    run_train(config, Path(spec["dataset_dir"]), run_dir, Console(file=sys.stdout, width=120))
    with (run_dir / "metrics.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "train"]
    return {
        "step_s": [round(int(r["tokens"]) / float(r["tokens_per_s"]), 4) for r in rows],
        "tokens": [int(r["tokens"]) for r in rows],
        "losses": [float(r["loss"]) for r in rows],
        "gradient_checkpointing": checkpointing,
        "answer_log_probs": "chunked head"
        if _cuda() and spec["stack"] != "forumtune_full_logits"
        else "full logits",
        "plan_8gb_card_gib": round(plan.total / bc.GIB, 2),
        "plan_fits_budget": plan.fits,
        "run_s": round(time.perf_counter() - started, 1),
    }


def trl_pairs(dataset_dir: Path):
    """The pairs as DPOTrainer's tokenized dataset (what its _prepare_dataset makes of text rows:
    prompt_ids, chosen_ids, rejected_ids), split where forumtune's labels start."""
    from datasets import Dataset

    columns: dict[str, list[list[int]]] = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": []}
    for line in (dataset_dir / "preferences_train.jsonl").read_text().splitlines():
        row = json.loads(line)
        start = next(i for i, label in enumerate(row["chosen_labels"]) if label != -100)
        columns["prompt_ids"].append(row["chosen_input_ids"][:start])
        columns["chosen_ids"].append(row["chosen_input_ids"][start:])
        columns["rejected_ids"].append(row["rejected_input_ids"][start:])
    return Dataset.from_dict(columns)


def dpo_config(spec: dict[str, Any]):
    from trl import DPOConfig

    cuda = _cuda()
    return DPOConfig(
        output_dir=str(Path(spec["work_dir"]) / "trl"),
        beta=BETA,
        loss_type=["sigmoid"],
        label_smoothing=0.0,
        max_length=spec["seq"],
        precompute_ref_log_probs=False,
        per_device_train_batch_size=spec["pairs"],
        gradient_accumulation_steps=1,
        max_steps=spec["warmup"] + spec["steps"],
        learning_rate=tt.LEARNING_RATE,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        optim="paged_adamw_8bit",
        gradient_checkpointing=True,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        activation_offloading=spec["stack"] == "trl_offload",
        bf16=cuda,
        use_cpu=not cuda,
        seed=tt.SEED,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def run_trl(spec: dict[str, Any]) -> dict[str, Any]:
    """TRL's DPOTrainer on the same NF4 model and pairs, each optimizer step timed by a callback between
    device synchronizations."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer, TrainerCallback
    from trl import DPOTrainer

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.step_s: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            bc.synchronize()
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            bc.synchronize()
            self.step_s.append(time.perf_counter() - self.started)
            bc.cuda_memory()  # a sample of the whole-process peak, as forumtune's steps are sampled

    model = tt.load_nf4_base(spec)
    timer = StepTimer()
    lora = LoraConfig(
        r=tt.LORA_R,
        lora_alpha=tt.LORA_ALPHA,
        lora_dropout=0.0,
        target_modules=LORA_TARGETS,
        bias="none",
        task_type="CAUSAL_LM",
    )
    # The trainer tokenizes text rows when it is built; the benchmark's rows are token ids already, so it is
    # built on one placeholder text row and then given the ids in the tokenized form it trains on.
    placeholder = Dataset.from_list([{"prompt": "a", "chosen": " b", "rejected": " c"}])
    trainer = DPOTrainer(
        model=model,
        args=dpo_config(spec),
        train_dataset=placeholder,
        processing_class=AutoTokenizer.from_pretrained(spec["model_dir"]),
        peft_config=lora,
        callbacks=[timer],
    )
    trainer.train_dataset = trl_pairs(Path(spec["dataset_dir"]))
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    pair_tokens = 2 * spec["seq"] * spec["pairs"]  # every row is full length: no padding
    return {
        "step_s": [round(s, 4) for s in timer.step_s],
        "tokens": [pair_tokens] * len(timer.step_s),
        "trainer_counted_tokens": getattr(trainer, "_total_train_tokens", None),
        "losses": losses,
        "trainable_dtypes": sorted({str(p.dtype) for p in trainer.model.parameters() if p.requires_grad}),
    }


class SkipRun(Exception):
    """A stack that cannot run on this machine (a CPU check of a GPU-only option)."""


def worker(spec: dict[str, Any]) -> None:
    result: dict[str, Any] = {"stack": spec["stack"], "cap_gib": spec.get("cap_gib") or None}
    if spec["stack"] != "build":
        bc.start_device_use()  # the card's idle free memory, before anything here touches CUDA
    try:
        import torch

        if spec["stack"] == "build":
            result.update(build=bc.ensure_model(Path(spec["model_dir"]), bc.PRESETS[spec["preset"]]))
            result["env"] = {**bc.environment(), "trl_packages": requirement_versions()}
        else:
            result["cap"] = bc.apply_memory_cap(spec.get("cap_gib"))
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            if not torch.cuda.is_available() and spec["stack"].startswith("trl"):
                if spec["stack"] == "trl_offload":
                    raise SkipRun("TRL's activation offloading needs an accelerator")
                os.environ["TRITON_INTERPRET"] = "1"  # TRL's fused log-prob head is a Triton kernel
            started = time.perf_counter()
            steps = run_trl(spec) if spec["stack"].startswith("trl") else run_forumtune(spec)
            result.update(steps, wall_in_process_s=round(time.perf_counter() - started, 1))
            result.update(summarise(steps, spec["warmup"]))
        result["status"] = "ok"
    except SkipRun as skip:
        result.update(status="skipped", error=str(skip))
    except BaseException as exc:  # noqa: BLE001 - every failure is a result
        result["status"] = "oom" if bc.is_oom(exc) else "error"
        result["error"] = f"{type(exc).__name__}: {str(exc)[:1500]}"
        if result["status"] == "error":
            import traceback

            result["traceback"] = traceback.format_exc()[-4000:]
    memory = bc.cuda_memory()
    if memory:
        result["peak_allocated_gib"] = memory["max_allocated_mib"] / 1024
        result["peak_reserved_gib"] = memory["max_reserved_mib"] / 1024
        result["memory_end"] = memory
    whole = bc.whole_process_peak(memory)
    if whole:
        result["device_use"] = whole
        result["whole_peak_gib"] = whole["whole_peak_mib"] / 1024
    Path(spec["result_path"]).write_text(json.dumps(result, indent=1, default=str))


def summarise(steps: dict[str, Any], warmup: int) -> dict[str, Any]:
    """tokens/s: the median over the steps after the warm-up (single slow steps from host jitter move a
    mean of a few steps by several percent), and the mean beside it."""
    timed = list(zip(steps["step_s"][warmup:], steps["tokens"][warmup:], strict=True))
    if not timed:
        return {"median_tokens_per_s": None, "mean_tokens_per_s": None, "timed_steps": 0}
    return {
        # as train_throughput.py reads it: a step's tokens over the median step's time (every step has the same)
        "median_tokens_per_s": statistics.median(t for _, t in timed)
        / statistics.median(s for s, _ in timed),
        "mean_tokens_per_s": sum(t for _, t in timed) / sum(s for s, _ in timed),
        "timed_steps": len(timed),
        "first_loss": steps["losses"][0] if steps["losses"] else None,
    }


# =========================================================================== orchestrator side


def requirement_versions() -> dict[str, str | None]:
    """The installed version of each extra package the trl stacks import (None: missing)."""
    found: dict[str, str | None] = {}
    for requirement, module in TRL_REQUIREMENTS:
        name = requirement.split("=")[0].split(">")[0]
        try:
            found[name] = importlib.metadata.version(name) if importlib.util.find_spec(module) else None
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def check_requirements(stacks: list[str]) -> None:
    """Name the missing extra packages before a 7B model is built for nothing."""
    if not any(s.startswith("trl") for s in stacks):
        return
    found = requirement_versions()
    print("extra packages of the trl stacks: " + ", ".join(f"{n} {v or 'MISSING'}" for n, v in found.items()))
    missing = [req for req, _ in TRL_REQUIREMENTS if found[req.split("=")[0].split(">")[0]] is None]
    if missing:
        raise SystemExit(
            f"the trl stacks need {' '.join(missing)}: pip install them (or put them on PYTHONPATH), "
            "or leave the trl stacks out with --stacks forumtune"
        )
    if found["trl"] != "1.15.0":
        print(f"note: written for trl 1.15.0 (DPOConfig/DPOTrainer arguments); found {found['trl']}")
    # importing them also needs what they import in turn (datasets: pyarrow, pandas, dill, multiprocess, xxhash)
    probe = subprocess.run(
        [sys.executable, "-c", "from trl import DPOConfig, DPOTrainer; import peft, bitsandbytes"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        raise SystemExit(f"the trl stacks cannot import TRL's DPOTrainer here:\n{probe.stderr[-1500:]}")


def run_stack(args, stack: str, dataset: Path, script: Path, payload: dict[str, Any]) -> None:
    """One stack under the cap, and again uncapped after an OOM (for a speed figure)."""
    caps = [args.cap_gib or None]
    while caps:
        cap = caps.pop(0)
        tag = f"{stack}-{args.pairs}x2x{args.seq}-{'cap' + str(cap) if cap else 'nocap'}"
        spec = {
            "tag": tag,
            "stack": stack,
            "model_dir": str(args.model_dir),
            "dataset_dir": str(dataset),
            "work_dir": str(args.work_dir / tag),
            "pairs": args.pairs,
            "seq": args.seq,
            "warmup": args.warmup,
            "steps": args.steps,
            "cap_gib": cap,
            "budget_gib": args.budget_gib,
        }
        result = bc.run_worker(
            script, spec, args.work_dir / "logs", timeout_s=args.run_timeout_s, extra_env=tt.EXTRA_ENV
        )
        result.update(stack=stack, cap_gib=cap, pairs=args.pairs, seq=args.seq)
        payload["runs"].append(result)
        print(
            f"{tag}: {result['status']} median tok/s={bc.fmt(result.get('median_tokens_per_s'))} "
            f"whole={bc.fmt(result.get('whole_peak_gib'), 2)} GiB wall={result.get('wall_s')}s "
            f"{result.get('error', '')[:300]}",
            flush=True,
        )
        if result["status"] == "error":
            print(result.get("traceback", result.get("log_tail", ""))[-2500:], flush=True)
        if result["status"] == "oom" and cap and args.uncapped_on_oom:
            caps.append(None)
        bc.write_json(args.out, payload)


def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    script = Path(__file__).resolve()
    stacks = [s for s in args.stacks.split(",") if s]
    unknown = [s for s in stacks if s not in STACKS]
    if unknown:
        raise SystemExit(f"unknown stack(s) {unknown}; choose from {STACKS}")
    if not 0 < args.prompt_len < args.seq:
        raise SystemExit(f"--prompt-len must be between 1 and --seq - 1 ({args.seq - 1})")
    check_requirements(stacks)
    shape = bc.PRESETS[args.preset]
    payload: dict[str, Any] = {
        "benchmark": "preference_throughput",
        "preset": args.preset,
        "shape": shape.__dict__,
        "batch": {"pairs": args.pairs, "prompt_len": args.prompt_len, "seq_per_answer_row": args.seq},
        "dpo": {"beta": BETA, "loss": "sigmoid", "reference": "adapter off"},
        "lora": {"r": tt.LORA_R, "alpha": tt.LORA_ALPHA, "dropout": 0.0, "targets": LORA_TARGETS},
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "cap_gib": args.cap_gib,
        "budget_gib": args.budget_gib,
        "runs": [],
    }
    build = bc.run_worker(
        script,
        {"tag": "build", "stack": "build", "preset": args.preset, "model_dir": str(args.model_dir)},
        args.work_dir / "logs",
        timeout_s=3600,
    )
    payload["env"], payload["model_build"] = build.get("env"), build.get("build") or build
    print(f"model: {args.model_dir} {payload['model_build']}", flush=True)
    if build.get("status") != "ok":
        bc.write_json(args.out, payload)
        raise SystemExit(f"building the model failed: {build.get('error')}\n{build.get('log_tail', '')}")
    count = max(8, args.pairs * (args.warmup + args.steps))
    dataset = write_pairs(
        args.work_dir / f"pairs-{args.prompt_len}-{args.seq}", shape.vocab, args.prompt_len, args.seq, count
    )
    for stack in stacks:
        run_stack(args, stack, dataset, script, payload)
    payload["seconds"] = round(time.perf_counter() - started, 1)
    bc.write_json(args.out, payload)
    return payload


def report(payload: dict[str, Any]) -> str:
    env = payload.get("env") or {}
    packages = {**env.get("packages", {}), **env.get("trl_packages", {})}
    print(
        f"{env.get('gpu')} | {env.get('nvidia_smi', '')} | CUDA {env.get('torch_cuda')} | "
        + " | ".join(
            f"{n} {packages.get(n)}" for n in ("torch", "transformers", "peft", "bitsandbytes", "trl")
        )
    )
    budget = payload.get("budget_gib", 7.6)
    runs = payload["runs"]
    peer = next((r for r in runs if r["stack"] == "trl" and r.get("median_tokens_per_s")), None)
    shape = bc.Shape(**payload["shape"]) if payload.get("shape") else bc.PRESETS["mistral-7b"]
    rows = []
    for run in runs:
        median = run.get("median_tokens_per_s")
        if run.get("seq"):  # DPO: the reference's forward on every row counts as model work
            flops = bc.step_flops(
                shape, run["seq"], bc.LORA_R, skips_down_proj=run["stack"].startswith("forumtune")
            )
            run["utilisation"] = bc.utilisation(median, flops, env.get("gpu"), reference_forwards=1)
        versus = median / peer["median_tokens_per_s"] if median and peer else None
        rows.append(
            [
                run["stack"],
                f"{run.get('pairs')}x(2x{run.get('seq')})",
                bc.fmt(run.get("cap_gib")),
                run["status"],
                bc.fmt(median),
                bc.fmt_pct(run.get("utilisation", {}).get("mfu")),
                bc.fmt(run.get("mean_tokens_per_s")),
                bc.fmt(versus, 2) + ("x" if versus else ""),
                bc.fmt(run.get("peak_allocated_gib"), 2),
                bc.fmt(run.get("peak_reserved_gib"), 2),
                bc.fmt(run.get("whole_peak_gib"), 2),
                tt.fits_budget(run, budget) if run.get("cap_gib") else "-",
                bc.fmt(run.get("first_loss"), 4),
                bc.fmt(run.get("plan_8gb_card_gib"), 2),
            ]
        )
    print()
    return bc.print_table(
        [
            "stack",
            "pairs x (2 x seq)",
            "cap GiB",
            "status",
            "tokens/s (median)",
            "MFU (median)",
            "tokens/s (mean)",
            "vs trl (median)",
            "peak alloc GiB",
            "peak reserved GiB",
            "whole process GiB",
            f"fits {budget:g} GiB",
            "step-1 loss",
            "plan GiB",
        ],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument(
        "--report", type=Path, metavar="JSON", help="print the table of an earlier result file"
    )
    parser.add_argument(
        "--requirements", action="store_true", help="print the trl stacks' extra packages and exit"
    )
    parser.add_argument("--preset", default="mistral-7b", choices=sorted(bc.PRESETS))
    parser.add_argument("--model-dir", type=Path, default=Path("/tmp/forumtune-bench/mistral-7b-shape"))
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/forumtune-bench/preference"))
    parser.add_argument("--stacks", default="forumtune,forumtune_offload,trl")
    parser.add_argument("--pairs", type=int, default=1, help="pairs per batch (each is 2 rows)")
    parser.add_argument("--seq", type=int, default=1024, help="tokens of each row: prompt + answer")
    parser.add_argument("--prompt-len", type=int, default=256, help="the prompt's share of --seq")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8, help="timed steps after the warm-up")
    parser.add_argument("--cap-gib", type=float, default=8.0, help="allocator cap; 0 for none")
    parser.add_argument("--budget-gib", type=float, default=7.6)
    parser.add_argument("--no-uncapped-on-oom", dest="uncapped_on_oom", action="store_false")
    parser.add_argument("--run-timeout-s", type=float, default=420)
    parser.add_argument("--out", type=Path, help="JSON results file")
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
    elif args.requirements:
        print(" ".join(req for req, _ in TRL_REQUIREMENTS))
    elif args.report:
        report(json.loads(args.report.read_text()))
    else:
        payload = orchestrate(args)
        payload["table"] = report(payload)
        bc.write_json(args.out, payload)


if __name__ == "__main__":
    main()
