#!/usr/bin/env python
"""Several GPUs through torchrun: does `forumtune train` on N GPUs follow the one-GPU loss curve with the
same global batch, and what does each engine cost?

Runs, each `forumtune train` in its own process(es) on a Mistral-7B-shaped model with random weights:
  single-8bit   1 GPU, micro-batch m·N, paged 8-bit AdamW        (the reference for ddp)
  ddp           torchrun N GPUs, micro-batch m, paged 8-bit AdamW
  single-adamw  1 GPU, micro-batch m·N, torch AdamW              (the reference for fsdp)
  fsdp          torchrun N GPUs, micro-batch m, AdamW, FSDP2 sharding the 4-bit base
The global batch is the same in each (m · N · grad_accum). LoRA dropout is 0, so the maths is the same
whatever the split. Prints each run's losses, the largest relative difference from its reference,
tokens/s and rank 0's peak memory; writes JSON.

  python benchmarks/distributed.py --gpus 2 --out distributed.json
CPU logic check (gloo, seconds): python benchmarks/distributed.py --preset tiny --device cpu --seq 64 \
  --model-dir /tmp/tiny-model --work-dir /tmp/tiny-dist
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common as bc

RUNS = {  # name: (processes are N GPUs?, optimizer, distributed engine, reference run)
    "single-8bit": (False, "paged_adamw_8bit", "ddp", None),
    "ddp": (True, "paged_adamw_8bit", "ddp", "single-8bit"),
    "single-adamw": (False, "adamw", "ddp", None),
    "fsdp": (True, "adamw", "fsdp", "single-adamw"),
}


def launch(name: str, args: argparse.Namespace, dataset: Path, work: Path) -> dict[str, Any]:
    spread, optimizer, engine, _ = RUNS[name]
    micro = args.micro if spread else args.micro * args.gpus
    config = bc.write_forumtune_config(
        work / name / "config.yaml",
        model_dir=Path(args.model_dir),
        runs_dir=work / name / "runs",
        batch=micro,
        seq_len=args.seq,
        steps=args.steps,
        device=args.device,
        compute_dtype="bfloat16" if args.device == "cuda" else "float32",
        train_extra={"grad_accum_steps": args.accum, "optimizer": optimizer, "distributed": engine},
    )
    run_dir = work / name / "runs" / "bench"
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(dataset, run_dir / "dataset")
    command = [sys.executable, "-m", "forumtune.cli", "train", str(config)]
    if spread:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            str(args.gpus),
            "-m",
            "forumtune.cli",
            "train",
            str(config),
        ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    if not spread and args.device == "cuda":
        env["CUDA_VISIBLE_DEVICES"] = "0"
    started = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=args.run_timeout_s, check=False
    )
    result: dict[str, Any] = {
        "run": name,
        "processes": args.gpus if spread else 1,
        "micro_batch": micro,
        "grad_accum": args.accum,
        "optimizer": optimizer,
        "engine": engine if spread else "-",
        "wall_s": round(time.perf_counter() - started, 1),
        "returncode": done.returncode,
    }
    if done.returncode != 0:
        result["log_tail"] = (done.stdout + done.stderr)[-3000:]
        return result
    with (run_dir / "metrics.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "train"]
    result["losses"] = [float(r["loss"]) for r in rows]
    timed = rows[args.warmup :] or rows
    seconds = sum(int(r["tokens"]) / float(r["tokens_per_s"]) for r in timed)
    result["tokens_per_s"] = sum(int(r["tokens"]) for r in timed) / seconds if seconds else None
    result["peak_memory_gib_rank0"] = max(float(r["peak_memory_mib"] or 0) for r in rows) / 1024
    return result


def compare(results: dict[str, dict[str, Any]]) -> None:
    for name, result in results.items():
        reference = results.get(RUNS[name][3] or "")
        if reference and result.get("losses") and reference.get("losses"):
            pairs = list(zip(result["losses"], reference["losses"], strict=False))
            result["max_rel_loss_diff_vs_reference"] = max(abs(a - b) / abs(b) for a, b in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="mistral-7b", choices=sorted(bc.PRESETS))
    parser.add_argument("--model-dir", default="/tmp/forumtune-bench/mistral-7b-shape")
    parser.add_argument("--work-dir", default="/tmp/forumtune-bench/distributed")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--gpus", type=int, default=2, help="processes under torchrun")
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--micro", type=int, default=1, help="micro-batch per process")
    parser.add_argument("--accum", type=int, default=2)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2, help="steps left out of tokens/s")
    parser.add_argument("--run-timeout-s", type=float, default=600)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    work, shape = Path(args.work_dir), bc.PRESETS[args.preset]
    build = bc.run_worker(
        Path(__file__).resolve().parent / "train_throughput.py",
        {"tag": "build", "stack": "build", "preset": args.preset, "model_dir": args.model_dir},
        work / "logs",
        timeout_s=900,
    )
    if build.get("status") != "ok":
        raise SystemExit(f"building the model failed: {build.get('error')}\n{build.get('log_tail', '')}")
    global_batch = args.micro * args.gpus * args.accum
    dataset = bc.write_dataset(work / "data", shape.vocab, args.seq, count=global_batch * args.steps)
    results: dict[str, dict[str, Any]] = {}
    for name in [n for n in args.runs.split(",") if n]:
        results[name] = launch(name, args, dataset, work)
        print(
            f"{name}: rc={results[name]['returncode']} wall={results[name]['wall_s']}s "
            f"{results[name].get('log_tail', '')[-1500:]}",
            flush=True,
        )
    compare(results)
    flops = bc.step_flops(shape, args.seq, bc.LORA_R, skips_down_proj=True)  # forumtune train's fast path
    gpu_name = (build.get("env") or {}).get("gpu") if args.device == "cuda" else None
    for r in results.values():
        per_gpu = r["tokens_per_s"] / r["processes"] if r.get("tokens_per_s") else None
        r["utilisation_per_gpu"] = bc.utilisation(per_gpu, flops, gpu_name)
    rows = [
        [
            r["run"],
            r["processes"],
            r["engine"],
            r["optimizer"],
            f"{r['micro_batch']}x{r['grad_accum']}",
            bc.fmt(r.get("tokens_per_s")),
            bc.fmt_pct(r["utilisation_per_gpu"]["mfu"]),
            bc.fmt(r.get("peak_memory_gib_rank0"), 2),
            " ".join(f"{x:.4f}" for x in r.get("losses", [])[:4]),
            f"{r['max_rel_loss_diff_vs_reference']:.1e}" if "max_rel_loss_diff_vs_reference" in r else "-",
        ]
        for r in results.values()
    ]
    print(f"\nglobal batch {global_batch} × {args.seq} tokens, {args.steps} steps, {args.preset}")
    bc.print_table(
        [
            "run",
            "procs",
            "engine",
            "optimizer",
            "micro x accum",
            "tokens/s",
            "MFU per GPU",
            "peak GiB (rank 0)",
            "first losses",
            "max rel. diff vs 1 GPU",
        ],
        rows,
    )
    bc.write_json(
        args.out,
        {
            "benchmark": "distributed",
            "env": build.get("env"),
            "global_batch": global_batch,
            "seq": args.seq,
            "steps": args.steps,
            "runs": list(results.values()),
        },
    )


if __name__ == "__main__":
    main()
