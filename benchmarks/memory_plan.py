#!/usr/bin/env python
"""forumtune's memory planner against the measured peak of forumtune's own trainer.

For each setting (micro-batch × sequence length, gradient checkpointing on/off) this runs
forumtune.train.loop.run_train for a few steps on a Mistral-7B-shaped model with random weights, in its
own process, and records torch.cuda.max_memory_allocated. It also records the pieces: memory after
the base model loads (4-bit), after LoRA is attached (prepare_model_for_kbit_training casts the
non-quantized weights to fp32), after the optimizer is made, and per step the peak in forward, the
memory kept for backward, the peak in backward, what the gradients hold, and the optimizer step.
Those are compared with forumtune.train.plan.plan_memory(config).parts.

It also measures the process's whole use of the card, what the planner's total counts: the card's free
memory before the process touched CUDA (NVML or nvidia-smi) minus its free memory at each mark and step
(torch.cuda.mem_get_info), and never less than the allocator's peak reservation plus what the process
holds outside the allocator (bench_common.DeviceUse). The planner's card parts (CUDA context, cuBLAS
workspace, paged optimizer state, the allocator's reserve) are compared with their measured counterparts.

The instrumentation wraps forumtune's own functions (no source change): load_base_model,
load_for_training and make_optimizer, plus forward hooks on the model and step hooks on the optimizer.
It resets the allocator's peak counter between phases and keeps its own running maximum.

Usage (GPU): python benchmarks/memory_plan.py --out memory_plan.json
The long-context check of train.tile_mlp (RESULTS.md §3b; about 70 s on an H200):
  python benchmarks/memory_plan.py --paths fast --gc offload --settings 1x16384,1x32768 --tile-mlp auto \
    --out memory-plan-tiled.json
CPU logic check: python benchmarks/memory_plan.py --preset tiny --settings 1x64 --gc on \
  --model-dir /tmp/tiny-model --work-dir /tmp/tiny-mem
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common as bc

MIB = bc.MIB


class Recorder:
    """Allocator readings at marked points, with a running maximum across peak-counter resets."""

    def __init__(self):
        import torch

        self.torch = torch
        self.cuda = torch.cuda.is_available()
        self.marks: dict[str, dict[str, float]] = {}
        self.steps: list[dict[str, float]] = []
        self.running_peak = 0.0
        self.running_reserved_peak = 0.0  # the peak counters are reset between phases

    def allocated(self) -> float:
        return self.torch.cuda.memory_allocated() / MIB if self.cuda else 0.0

    def peak_and_reset(self) -> float:
        if not self.cuda:
            return 0.0
        peak = self.torch.cuda.max_memory_allocated() / MIB
        self.running_peak = max(self.running_peak, peak)
        self.running_reserved_peak = max(
            self.running_reserved_peak, self.torch.cuda.max_memory_reserved() / MIB
        )
        self.torch.cuda.reset_peak_memory_stats()
        return peak

    def mark(self, name: str) -> None:
        memory = bc.cuda_memory()  # also a sample of the process's whole use
        self.marks[name] = {
            "allocated_mib": self.allocated(),
            "peak_since_last_mib": self.peak_and_reset(),
            "device_used_mib": memory.get("device_used_mib"),
            "reserved_mib": memory.get("reserved_mib"),
            "process_device_mib": memory.get("process_device_mib"),
        }

    def whole_process(self) -> dict[str, Any]:
        """The process's whole-use report, with the allocator's peak reservation over all phases."""
        memory = bc.cuda_memory()
        if memory:
            self.peak_and_reset()
            memory["max_reserved_mib"] = self.running_reserved_peak
        return bc.whole_process_peak(memory)

    # hooks -----------------------------------------------------------------------------------------
    def before_forward(self, module, args):
        self.steps.append({"before_forward": self.allocated(), "peak_before_forward": self.peak_and_reset()})

    def after_forward(self, module, args, output):
        step = self.steps[-1]
        step["forward_peak"] = self.peak_and_reset()
        step["after_forward"] = self.allocated()

    def before_optimizer(self, optimizer, args, kwargs):
        step = self.steps[-1]
        step["backward_peak"] = self.peak_and_reset()  # backward and gradient clipping
        step["after_backward"] = self.allocated()
        if self.cuda:
            step["process_device_after_backward"] = bc.cuda_memory().get("process_device_mib")

    def after_optimizer(self, optimizer, args, kwargs):
        step = self.steps[-1]
        step["optimizer_peak"] = self.peak_and_reset()
        step["after_optimizer"] = self.allocated()
        if self.cuda:
            memory = bc.cuda_memory()
            step["device_used_after_optimizer"] = memory["device_used_mib"]
            step["reserved_after_optimizer"] = memory["reserved_mib"]


def instrument(recorder: Recorder) -> None:
    from forumtune.train import loading, loop

    original_base, original_full, original_optim = (
        loading.load_base_model,
        loop.load_for_training,
        loop.make_optimizer,
    )

    def load_base_model(*args, **kwargs):
        recorder.mark("before_load")
        model = original_base(*args, **kwargs)
        bc.synchronize()
        recorder.mark("after_base_load")
        return model

    def load_for_training(*args, **kwargs):
        model = original_full(*args, **kwargs)
        bc.synchronize()
        recorder.mark("after_lora_attach")
        return model

    def make_optimizer(model, train, device, **kwargs):
        optimizer = original_optim(model, train, device, **kwargs)
        recorder.mark("after_optimizer_init")
        model.register_forward_pre_hook(recorder.before_forward)
        model.register_forward_hook(recorder.after_forward)
        optimizer.register_step_pre_hook(recorder.before_optimizer)
        optimizer.register_step_post_hook(recorder.after_optimizer)
        return optimizer

    loading.load_base_model = load_base_model
    loop.load_for_training = load_for_training
    loop.make_optimizer = make_optimizer


def measured_parts(marks: dict[str, dict[str, float]], steps: list[dict[str, float]]) -> dict[str, float]:
    """The measured counterparts of the planner's parts, in MiB."""
    parts: dict[str, float] = {}
    base = marks.get("before_load", {}).get("allocated_mib", 0.0)
    if "after_base_load" in marks:
        parts["base model as loaded (4-bit linear + bf16 rest)"] = (
            marks["after_base_load"]["allocated_mib"] - base
        )
        parts["peak while loading"] = marks["after_base_load"]["peak_since_last_mib"] - base
    if "after_lora_attach" in marks:
        parts["model after LoRA attach (fp32 rest + LoRA)"] = (
            marks["after_lora_attach"]["allocated_mib"] - base
        )
    complete = [s for s in steps if "after_optimizer" in s]
    if complete:
        last = complete[-1]
        static = last["before_forward"]
        parts["static at step start"] = static - base
        parts["forward: kept for backward"] = last["after_forward"] - static
        parts["forward: peak above static"] = last["forward_peak"] - static
        parts["backward: peak above static"] = last["backward_peak"] - static
        parts["LoRA grads (after backward)"] = last["after_backward"] - static
        parts["optimizer step: peak above static"] = last["optimizer_peak"] - static
        init = marks.get("after_optimizer_init", {})
        first = complete[0]
        if init.get("device_used_mib") is not None and first.get("device_used_after_optimizer") is not None:
            # device memory outside PyTorch's allocator that the first optimizer step added: the paged
            # optimizer's state (CUDA managed memory) and library workspaces
            parts["outside the allocator: growth over step 1"] = (
                first["device_used_after_optimizer"] - first["reserved_after_optimizer"]
            ) - (init["device_used_mib"] - init["reserved_mib"])
    return parts


def measured_card_parts(
    marks: dict[str, dict[str, float]], whole: dict[str, Any], peak_allocated: float, peak_reserved: float
) -> dict[str, float]:
    """The measured counterparts of the planner's card parts, in MiB: the CUDA context when CUDA starts
    (the first mark's reading initialises it, before anything is allocated), what sits outside the
    allocator once the model is loaded and at the end (context, kernels, library handles, workspaces the
    libraries allocate themselves, the paged optimizer's managed memory), and the allocator's reserve at
    its peak."""
    parts: dict[str, float] = {}
    before = marks.get("before_load", {})
    if before.get("process_device_mib") is not None:
        parts["CUDA context at initialisation"] = before["process_device_mib"] - (
            before.get("reserved_mib") or 0
        )
    loaded = marks.get("after_base_load", {})
    if loaded.get("process_device_mib") is not None:
        parts["outside the allocator after loading"] = loaded["process_device_mib"] - loaded["reserved_mib"]
    if whole:
        parts["outside the allocator at the end"] = whole["outside_allocator_mib"]
    if peak_reserved:
        parts["allocator's reserve at its peak (max reserved - max allocated)"] = (
            peak_reserved - peak_allocated
        )
    return parts


def run_setting(spec: dict[str, Any]) -> dict[str, Any]:
    from rich.console import Console

    from forumtune.config import load_config
    from forumtune.train.loop import run_train
    from forumtune.train.plan import plan_memory

    recorder = Recorder()
    instrument(recorder)
    work = Path(spec["work_dir"])
    cuda = recorder.cuda
    config_path = bc.write_forumtune_config(
        work / "config.yaml",
        model_dir=Path(spec["model_dir"]),
        runs_dir=work / "runs",
        batch=spec["batch"],
        seq_len=spec["seq"],
        steps=spec["steps"],
        gradient_checkpointing=spec["gradient_checkpointing"],
        compute_dtype="bfloat16" if cuda else "float32",
        device="cuda" if cuda else "cpu",
        fast_path=spec.get("fast_path", False),
        train_extra=train_settings(spec) or None,
    )
    config = load_config(config_path)
    plan = plan_memory(config, 80.0)
    result: dict[str, Any] = {
        "plan_parts_mib": {k: v / MIB for k, v in plan.parts.items()},
        "plan_card_parts_mib": {k: v / MIB for k, v in plan.card_parts.items()},
        "plan_host_parts_mib": {k: v / MIB for k, v in plan.host_parts.items()},
        "plan_allocated_mib": plan.allocated / MIB,
        "plan_whole_mib": plan.total / MIB,
    }
    run_dir = work / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        run_train(config, Path(spec["dataset_dir"]), run_dir, Console(file=sys.stdout, width=120))
        result["status"] = "ok"
    except BaseException as exc:  # noqa: BLE001
        result["status"] = "oom" if bc.is_oom(exc) else "error"
        result["error"] = f"{type(exc).__name__}: {str(exc)[:800]}"
        if result["status"] == "error":
            import traceback

            result["traceback"] = traceback.format_exc()[-3000:]
    result["seconds"] = round(time.perf_counter() - started, 1)
    whole = recorder.whole_process()
    result.update(
        marks=recorder.marks,
        steps=recorder.steps,
        measured_peak_mib=recorder.running_peak,
        measured_reserved_peak_mib=recorder.running_reserved_peak,
        measured_parts_mib=measured_parts(recorder.marks, recorder.steps),
        measured_card_parts_mib=measured_card_parts(
            recorder.marks, whole, recorder.running_peak, recorder.running_reserved_peak
        ),
    )
    if whole:
        result["device_use"] = whole
        result["measured_whole_mib"] = whole["whole_peak_mib"]
    if result["status"] == "ok" and recorder.running_peak:
        result["error_pct"] = 100.0 * (plan.allocated / MIB - recorder.running_peak) / recorder.running_peak
    if result["status"] == "ok" and whole:
        result["whole_error_pct"] = (
            100.0 * (plan.total / MIB - whole["whole_peak_mib"]) / whole["whole_peak_mib"]
        )
    return result


def worker(spec: dict[str, Any]) -> None:
    result: dict[str, Any] = {k: spec.get(k) for k in SETTING_KEYS}
    bc.start_device_use()  # the card's idle free memory, before anything here touches CUDA
    try:
        result.update(run_setting(spec))
    except BaseException as exc:  # noqa: BLE001
        import traceback

        result.update(
            status="error", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()[-3000:]
        )
    Path(spec["result_path"]).write_text(json.dumps(result, indent=1, default=str))


def train_settings(spec: dict[str, Any]) -> dict[str, Any]:
    """The train.* keys a run sets beyond the benchmark config: each left at the config's default when unset."""
    settings: dict[str, Any] = {}
    for key in ("tile_mlp", "split_attention"):
        if spec.get(key) is not None:
            settings[key] = spec[key]
    if spec.get("embeddings_on_host") is not None:
        settings["embeddings_on_host"] = bc.EMBEDDINGS_ON_HOST[spec["embeddings_on_host"]]
    return settings


SETTING_KEYS = (
    "batch",
    "seq",
    "gradient_checkpointing",
    "fast_path",
    "tile_mlp",
    "split_attention",
    "embeddings_on_host",
)
GC_CHOICES = {"on": True, "off": False, "offload": "offload"}


def setting_label(run: dict[str, Any]) -> str:
    gc = {True: "on", False: "off"}.get(run["gradient_checkpointing"], run["gradient_checkpointing"])
    tiles = f" tile_mlp {run['tile_mlp']}" if run.get("tile_mlp") is not None else ""
    host = run.get("embeddings_on_host")
    tiles += f" embeddings_on_host {host}" if host is not None else ""
    return f"{run['batch']}x{run['seq']} gc {gc} {'fast' if run.get('fast_path') else 'plain'}{tiles}"


def gib(mib: float | None) -> str:
    return bc.fmt(mib / 1024, 2) if mib is not None else "-"


def percent(value: float | None) -> str:
    return f"{value:+.1f}%" if value is not None else "-"


def print_tables(runs: list[dict[str, Any]]) -> None:
    rows = []
    for r in runs:
        gc = setting_label(r).split(" ", 1)[1]
        planned = r.get("plan_allocated_mib", r.get("plan_total_mib"))  # results before the whole count
        rows.append(
            [
                f"{r['batch']}x{r['seq']}",
                gc,
                gib(planned),
                gib(r.get("measured_peak_mib", 0))
                if r.get("status") == "ok"
                else f"{r.get('status', '').upper()} (reached {r.get('measured_peak_mib', 0) / 1024:.1f})",
                percent(r.get("error_pct")),
                gib(r.get("plan_whole_mib")),
                gib(r.get("measured_whole_mib")),
                percent(r.get("whole_error_pct")),
            ]
        )
    print()
    bc.print_table(
        [
            "batch",
            "checkpointing, path",
            "planner alloc GiB",
            "measured alloc GiB",
            "error",
            "planner whole GiB",
            "measured whole GiB",
            "whole error",
        ],
        rows,
    )
    for title, key in (
        ("planner parts (GiB)", "plan_parts_mib"),
        ("measured parts (GiB)", "measured_parts_mib"),
        ("planner card parts (GiB)", "plan_card_parts_mib"),
        ("measured card parts (GiB)", "measured_card_parts_mib"),
    ):
        names: list[str] = []
        for r in runs:
            names += [n for n in r.get(key, {}) if n not in names]
        print(f"\n{title}:")
        bc.print_table(
            ["part"] + [setting_label(r) for r in runs],
            [[n] + [bc.fmt(r.get(key, {}).get(n, 0.0) / 1024, 3) for r in runs] for n in names],
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument(
        "--report", nargs="+", metavar="JSON", help="print the tables of earlier result files"
    )
    parser.add_argument("--preset", default="mistral-7b", choices=sorted(bc.PRESETS))
    parser.add_argument("--model-dir", default="/tmp/forumtune-bench/mistral-7b-shape")
    parser.add_argument("--work-dir", default="/tmp/forumtune-bench/memory")
    parser.add_argument("--settings", default="1x512,2x512,1x2048,2x2048")
    parser.add_argument(
        "--gc", default="on,off", help="gradient checkpointing settings to try: on,off,offload"
    )
    parser.add_argument("--paths", default="fast", help="trainer paths to try: fast,plain (train.fast_path)")
    parser.add_argument(
        "--tile-mlp", help="train.tile_mlp: auto, off or tokens per tile (default: the config's, auto)"
    )
    parser.add_argument(
        "--split-attention",
        choices=("auto", "on", "off"),
        help="train.split_attention (default: the config's, auto, which judges by the card's whole memory)",
    )
    parser.add_argument(
        "--embeddings-on-host",
        choices=sorted(bc.EMBEDDINGS_ON_HOST),
        default="auto",
        help="train.embeddings_on_host: the input embedding table in host memory (auto: on the fast path "
        "when the head is not tied to it; default auto)",
    )
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--run-timeout-s", type=float, default=300)
    parser.add_argument("--deadline-s", type=float, default=1e9)
    parser.add_argument("--min-run-s", type=float, default=45)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    if args.report:
        merged: dict[tuple, dict[str, Any]] = {}  # later files win for the same setting
        for path in args.report:
            for r in json.loads(Path(path).read_text()).get("runs", []):
                if r.get("status") != "skipped":
                    merged[tuple(r.get(k) for k in SETTING_KEYS)] = r
        runs = sorted(
            merged.values(), key=lambda r: (setting_label(r).split(" ", 1)[1], r["batch"] * r["seq"])
        )
        print_tables(runs)
        bc.write_json(args.out, {"benchmark": "memory_plan", "runs": runs})
        return
    started = time.perf_counter()
    script = Path(__file__).resolve()
    shape = bc.PRESETS[args.preset]
    work_dir, model_dir = Path(args.work_dir), Path(args.model_dir)
    logs = work_dir / "logs"
    build_spec = {"tag": "build", "stack": "build", "preset": args.preset, "model_dir": str(model_dir)}
    build = bc.run_worker(script.parent / "train_throughput.py", build_spec, logs, timeout_s=900)
    payload: dict[str, Any] = {
        "benchmark": "memory_plan",
        "preset": args.preset,
        "shape": shape.__dict__,
        "env": build.get("env"),
        "model_build": build.get("build"),
        "runs": [],
    }
    if build.get("status") != "ok":
        bc.write_json(args.out, payload)
        raise SystemExit(f"building the model failed: {build.get('error')}\n{build.get('log_tail', '')}")
    extra_env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    gcs = [GC_CHOICES[g.strip()] for g in args.gc.split(",") if g.strip()]
    paths = [p.strip() == "fast" for p in args.paths.split(",") if p.strip()]
    grid = [(gc, fast, text) for fast in paths for gc in gcs for text in args.settings.split(",")]
    for gc, fast, text in grid:
        batch, seq = bc.parse_shape_arg(text)
        tag = f"mem-{batch}x{seq}-gc{gc}-{'fast' if fast else 'plain'}"
        left = args.deadline_s - (time.perf_counter() - started)
        if left < args.min_run_s:
            payload["runs"].append(
                {
                    "batch": batch,
                    "seq": seq,
                    "gradient_checkpointing": gc,
                    "fast_path": fast,
                    "status": "skipped",
                }
            )
            print(f"{tag}: skipped (time)", flush=True)
            continue
        dataset = bc.write_dataset(
            work_dir / f"data-{batch}x{seq}", shape.vocab, seq, count=max(8, batch * args.steps)
        )
        spec = {
            "tag": tag,
            "model_dir": str(model_dir),
            "dataset_dir": str(dataset),
            "work_dir": str(work_dir / tag),
            "batch": batch,
            "seq": seq,
            "gradient_checkpointing": gc,
            "fast_path": fast,
            "tile_mlp": args.tile_mlp,
            "split_attention": args.split_attention,
            "embeddings_on_host": args.embeddings_on_host,
            "steps": args.steps,
        }
        result = bc.run_worker(
            script, spec, logs, timeout_s=min(args.run_timeout_s, left), extra_env=extra_env
        )
        result.update(
            {
                "batch": batch,
                "seq": seq,
                "gradient_checkpointing": gc,
                "fast_path": fast,
                "tile_mlp": args.tile_mlp,
                "split_attention": args.split_attention,
                "embeddings_on_host": args.embeddings_on_host,
            }
        )
        payload["runs"].append(result)
        print(
            f"{tag}: {result.get('status')} plan={gib(result.get('plan_allocated_mib'))} GiB "
            f"measured={gib(result.get('measured_peak_mib'))} GiB; whole process: plan="
            f"{gib(result.get('plan_whole_mib'))} measured={gib(result.get('measured_whole_mib'))} GiB "
            f"wall={result.get('wall_s')}s "
            f"{result.get('error', '')[:200]}",
            flush=True,
        )
        if result.get("status") == "error":
            print(result.get("traceback", result.get("log_tail", ""))[-2000:], flush=True)
        bc.write_json(args.out, payload)
    payload["seconds"] = round(time.perf_counter() - started, 1)
    bc.write_json(args.out, payload)
    print_tables([r for r in payload["runs"] if r.get("status") != "skipped"])


if __name__ == "__main__":
    main()
