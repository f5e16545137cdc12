"""FP8 base matmuls (train.base_matmul: fp8) against bf16 on a real model and real data: SmolLM2-135M-Instruct
in NF4 fine-tuned on the bundled demo forum (examples/demo.yaml: scraped over HTTP, built into chat rows),
the same seed, data and settings, 200 optimizer steps each on forumtune's fast path.

Writes both train-loss curves (every step) and eval losses (every --eval-every steps) to JSON and a PNG,
and prints: the mean train loss of the last 20 steps, the eval losses, the largest |fp8 − bf16| of each,
tokens/s, each final adapter's held-out loss with bf16 products (as eval and chat run it: the training's
own losses of the fp8 run include the fp8 forward's rounding), and the first-step LoRA gradients of bf16 and fp8 against an fp32 reference (the same NF4
weights, batch and LoRA weights; lora_B drawn non-zero so that lora_A's gradients are not zero either).

    python benchmarks/fp8_loss_curve.py                                    # a GPU with FP8 (Ada, Hopper)
    python benchmarks/fp8_loss_curve.py --steps 3 --eval-every 3 --force-fp8-on-cpu --tag cpu-smoke
                                                                           # the CPU smoke run

--force-fp8-on-cpu is for checking the script on a CPU: forumtune refuses train.base_matmul=fp8 off a CUDA
GPU and runs the fast path only on one, so this flag lifts both checks inside this process. The fp8
products then run through torch._scaled_mm's CPU kernel; the figures are not measurements of anything.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from bench_common import environment, fmt, print_table, write_json
from quality import ROOT, held_out_losses, loss_curve
from rich.console import Console
from train_throughput import check_fp8_dequantize

from forumtune.config import Config, load_config
from forumtune.eval.timing import PhaseTimer
from forumtune.layout import RunLayout
from forumtune.metrics_log import read_metrics
from forumtune.models import pick_device
from forumtune.pipeline import run_pipeline
from forumtune.train import loading, loop, preflight

VARIANTS = ("bf16", "fp8")
LAST_STEPS = 20  # the final train loss is the mean over these many last steps (one step's loss is noisy)
GRAD_VARIANTS = {  # the first-step gradient check: fp32 is the reference
    "fp32": ["train.fast_path=false", "model.compute_dtype=float32", "train.base_matmul=bf16"],
    "bf16": ["train.base_matmul=bf16"],
    "fp8": ["train.base_matmul=fp8"],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "demo.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps of each training")
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--runs-dir", type=Path, default=Path("/tmp/forumtune-fp8-curve"))
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--tag", default=None, help="names the results: fp8-loss-curve-TAG.json/.png")
    parser.add_argument(
        "--force-fp8-on-cpu",
        action="store_true",
        help="the CPU smoke run: lift forumtune's CUDA-only checks for fp8 and the fast path (see above)",
    )
    return parser.parse_args(argv)


def variant_config(args: argparse.Namespace, name: str, extra: list[str]) -> Config:
    """The demo's config as a QLoRA run on the fast path, changed by `extra` (the variant's keys)."""
    overrides = [
        *args.overrides,
        f"name=fp8-curve-{name}",
        f"runs_dir={args.runs_dir}",
        "model.load_in_4bit=true",
        "model.quant_type=nf4",
        "model.double_quant=true",
        "model.compute_dtype=bfloat16",
        "train.fast_path=true",
        "train.gradient_checkpointing=true",
        f"train.max_steps={args.steps}",
        f"train.eval_every={args.eval_every}",
        f"train.save_every={args.steps}",
        f"train.micro_batch_size={args.micro_batch}",
        "train.grad_accum_steps=1",
        f"train.learning_rate={args.learning_rate}",
        f"train.warmup_steps={max(1, args.steps // 20)}",
        "train.early_stopping_patience=null",
        "train.final_adapter=last",
        *extra,
    ]
    if not args.force_fp8_on_cpu:
        overrides.append("train.device=cuda")
    return load_config(args.config, overrides)


@contextlib.contextmanager
def fp8_forced_on_cpu(enabled: bool) -> Iterator[None]:
    """The CPU smoke run only: forumtune's fast path and train.base_matmul=fp8 as if on a GPU."""
    if not enabled:
        yield
        return

    def fast_anywhere(config: Config, device: torch.device) -> bool:
        return config.train.fast_path and config.model.compute_dtype != "float32"

    saved = loading.uses_fast_path, loop.uses_fast_path, preflight.check_base_matmul
    loading.uses_fast_path = loop.uses_fast_path = fast_anywhere
    preflight.check_base_matmul = lambda config, device: None
    try:
        yield
    finally:
        loading.uses_fast_path, loop.uses_fast_path, preflight.check_base_matmul = saved


def train_variant(args: argparse.Namespace, variant: str, console: Console) -> dict[str, Any]:
    """One training through the pipeline (scrape, build, train; finished stages are reused)."""
    config = variant_config(args, variant, [f"train.base_matmul={variant}"])
    started = time.perf_counter()
    run_pipeline(config, console, until="train")
    layout = RunLayout.of(config)
    rows = [r for r in read_metrics(layout.metrics_csv) if r["split"] == "train"]
    rates = [float(r["tokens_per_s"]) for r in rows[min(5, len(rows) - 1) :]]  # after warm-up and capture
    curve = loss_curve(layout.root)
    *_, base_loss, tuned_loss = held_out_losses(config, PhaseTimer(pick_device(config.train.device)))
    return {
        "run_dir": str(layout.root),
        "seconds": round(time.perf_counter() - started, 1),
        "loss_curve": curve,
        "final_train_loss": statistics.fmean(loss for _, loss in curve["train"][-LAST_STEPS:]),
        # the final adapter as eval loads it: bitsandbytes' own bf16 products, whichever way it trained
        "held_out_loss_bf16_products": {"base": base_loss, "tuned": tuned_loss},
        "tokens_per_s": statistics.median(rates),
        "peak_memory_mib": max(float(r["peak_memory_mib"] or 0) for r in rows),
        "dataset_sha256": dataset_digest(layout),
    }


def dataset_digest(layout: RunLayout) -> str:
    """The training rows' digest: both variants must have trained on the same data."""
    digest = hashlib.sha256()
    for split in ("train", "eval"):
        digest.update(layout.dataset.split(split).read_bytes())
    return digest.hexdigest()


def first_step_grads(
    args: argparse.Namespace, variant: str, dataset_dir: Path
) -> tuple[dict[str, torch.Tensor], str | None]:
    """The LoRA gradients of one micro-batch (the training's first) with fixed LoRA weights: the trainer's
    own setup, batching, precision and loss, without an optimizer step. For fp8, also the kernels' check
    against their torch references on this model (train_throughput.check_fp8_dequantize)."""
    extra = [*GRAD_VARIANTS[variant], "lora.dropout=0", "train.cuda_graphs=false"]
    config = variant_config(args, f"grads-{variant}", extra)
    run = loop.setup(config, dataset_dir, RunLayout.of(config), Console(quiet=True), restart=True)
    try:
        set_lora_weights(run.model)
        prepared = loop.prepare_step(run, iter([list(range(config.train.micro_batch_size))]))
        with loop.forward_precision(run):
            loss = run.objective.loss(
                run.model, prepared.device_batches[0], run.objective.count(prepared.host_batches[0])
            )
        loss.backward()
        kernel_check = check_fp8_dequantize(run.model) if variant == "fp8" else None
    finally:
        run.reporter.close()
    grads = {n: p.grad.detach().float().cpu() for n, p in run.model.named_parameters() if p.grad is not None}
    return grads, kernel_check


def set_lora_weights(model: torch.nn.Module) -> None:
    """The same LoRA weights in every variant, whatever the loading consumed of the random stream; lora_B
    non-zero (peft starts it at zero), so that lora_A's gradients are not zero."""
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, parameter in sorted(model.named_parameters()):
            if "lora_A" in name or "lora_B" in name:
                std = parameter.shape[1] ** -0.5 if "lora_A" in name else 0.02
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)


def gradient_errors(grads: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> dict[str, Any]:
    """||g − g_ref|| / ||g_ref|| over all LoRA gradients, over lora_A's and lora_B's, and the worst tensor."""

    def overall(names: list[str]) -> float:
        diff = sum(float((grads[n] - reference[n]).norm()) ** 2 for n in names)
        return (diff / sum(float(reference[n].norm()) ** 2 for n in names)) ** 0.5

    names = sorted(reference)
    per_tensor = {
        n: float((grads[n] - reference[n]).norm() / reference[n].norm().clamp_min(1e-30)) for n in names
    }
    worst = max(per_tensor, key=per_tensor.get)
    return {
        "tensors": len(names),
        "overall": overall(names),
        "lora_A": overall([n for n in names if "lora_A" in n]),
        "lora_B": overall([n for n in names if "lora_B" in n]),
        "worst": per_tensor[worst],
        "worst_tensor": worst,
    }


def compare_curves(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """fp8 − bf16, step by step (train) and eval by eval."""
    result: dict[str, Any] = {}
    for split in ("train", "eval"):
        bf16 = dict(map(tuple, runs["bf16"]["loss_curve"][split]))
        fp8 = dict(map(tuple, runs["fp8"]["loss_curve"][split]))
        steps = sorted(set(bf16) & set(fp8))
        deltas = [fp8[s] - bf16[s] for s in steps]
        result[split] = {
            "steps": len(steps),
            "max_abs_delta": max(map(abs, deltas)) if deltas else None,
            "mean_delta": statistics.fmean(deltas) if deltas else None,
        }
    return result


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 5))
    for variant, colour in zip(VARIANTS, ("tab:blue", "tab:orange"), strict=True):
        curve = result["runs"][variant]["loss_curve"]
        axis.plot(*zip(*curve["train"], strict=True), color=colour, alpha=0.6, lw=1, label=f"{variant} train")
        if curve["eval"]:
            axis.plot(*zip(*curve["eval"], strict=True), "o-", color=colour, lw=2, label=f"{variant} eval")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("loss per answer token")
    axis.set_title(
        f"{result['model']} (NF4), bf16 vs fp8 base matmuls\n{result['device_label']}", fontsize=10
    )
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def print_report(result: dict[str, Any]) -> None:
    runs, delta = result["runs"], result["delta"]
    print(f"\n{result['model']} on the demo forum, {result['steps']} steps each ({result['device_label']})")
    print_table(
        [
            "base matmuls",
            f"train loss (last {LAST_STEPS})",
            "final eval loss",
            "held-out loss, bf16 products",
            "tokens/s",
            "peak MiB",
        ],
        [
            [
                v,
                fmt(runs[v]["final_train_loss"], 4),
                fmt(runs[v]["loss_curve"]["eval"][-1][1] if runs[v]["loss_curve"]["eval"] else None, 4),
                fmt(runs[v]["held_out_loss_bf16_products"]["tuned"], 4),
                fmt(runs[v]["tokens_per_s"]),
                fmt(runs[v]["peak_memory_mib"]),
            ]
            for v in VARIANTS
        ],
    )
    fp8_eval = dict(map(tuple, runs["fp8"]["loss_curve"]["eval"]))
    print_table(
        ["step", "eval loss bf16", "eval loss fp8", "fp8 − bf16"],
        [
            [
                step,
                fmt(loss, 4),
                fmt(fp8_eval.get(step), 4),
                fmt(fp8_eval[step] - loss, 4) if step in fp8_eval else "-",
            ]
            for step, loss in runs["bf16"]["loss_curve"]["eval"]
        ],
    )
    print(
        f"max |fp8 − bf16|: train loss {fmt(delta['train']['max_abs_delta'], 4)} over {delta['train']['steps']} "
        f"steps, eval loss {fmt(delta['eval']['max_abs_delta'], 4)} over {delta['eval']['steps']} evals"
    )
    print(result["fp8_kernel_check"])
    print("\nfirst-step LoRA gradients against the fp32 reference (relative Frobenius error)")
    print_table(
        ["base matmuls", "all", "lora_A", "lora_B", "worst tensor"],
        [
            [
                v,
                *(fmt(e[k], 3, sci=True) for k in ("overall", "lora_A", "lora_B", "worst")),
                e["worst_tensor"],
            ]
            for v, e in result["first_step_grads"].items()
        ],
    )


def measure(args: argparse.Namespace) -> dict[str, Any]:
    console = Console(stderr=True)
    with fp8_forced_on_cpu(args.force_fp8_on_cpu):
        runs = {variant: train_variant(args, variant, console) for variant in VARIANTS}
        dataset_dir = RunLayout.of(variant_config(args, "bf16", [])).dataset.dir
        checked = {variant: first_step_grads(args, variant, dataset_dir) for variant in GRAD_VARIANTS}
    grads = {variant: found for variant, (found, _) in checked.items()}
    if runs["bf16"]["dataset_sha256"] != runs["fp8"]["dataset_sha256"]:
        raise SystemExit("the two trainings built different datasets; they cannot be compared")
    config = variant_config(args, "bf16", [])
    return {
        "benchmark": "fp8_loss_curve",
        "model": config.model.base,
        "config": str(args.config),
        "overrides": args.overrides,
        "steps": args.steps,
        "device_label": "CPU smoke run, fp8 forced (not a measurement)" if args.force_fp8_on_cpu else "GPU",
        "forced_on_cpu": args.force_fp8_on_cpu,
        "environment": environment(),
        "runs": runs,
        "delta": compare_curves(runs),
        "first_step_grads": {v: gradient_errors(grads[v], grads["fp32"]) for v in ("bf16", "fp8")},
        "fp8_kernel_check": checked["fp8"][1],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    result = measure(args)
    tag = args.tag or ("cpu" if args.force_fp8_on_cpu else "gpu")
    out = args.out_dir / f"fp8-loss-curve-{tag}.json"
    write_json(out, result)
    plot(result, out.with_suffix(".png"))
    print_report(result)
    print(f"\nwrote {out} and {out.with_suffix('.png')}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
