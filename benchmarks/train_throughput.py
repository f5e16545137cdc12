#!/usr/bin/env python
"""Training throughput and peak memory of QLoRA on a 7-9B model shape (Mistral-7B by default; --preset
llama-3.1-8b, qwen2.5-7b or gemma-2-9b for the other families, each built with its own transformers
config class so every stack loads the real architecture): the plain transformers + peft + bitsandbytes
stack, unsloth, and forumtune's own trainer, side by side.

Each (stack, batch shape) runs in its own Python process, so one run's memory never counts against
another's. A run first tries under the memory cap (default 8 GiB, an 8 GB consumer card stand-in,
set with torch.cuda.set_per_process_memory_fraction); if that runs out of memory the OOM is recorded
and, with --uncapped-on-oom (the default), the run is repeated without the cap so that every stack has
a speed figure. The model has random weights (it is the shape that costs), written once to --model-dir.

The cap holds PyTorch's allocator only. Each run also records the process's whole use of the card, as
the card sees it: its free memory before the process touched CUDA (NVML or nvidia-smi) minus its free
memory after loading, after each step and at the end (torch.cuda.mem_get_info), and never less than the
allocator's peak reservation plus what the process holds outside the allocator (CUDA context, library
workspaces, the paged optimizer's managed memory). The table prints it beside peak allocated and
reserved, with whether it stays within --budget-gib (7.6: what an 8 GB card leaves to a process).
--bisect-seq finds, per stack, the longest sequence at batch 1 whose whole use stays within the budget.

MFU (the table's column and each run's `utilisation` in the JSON): the median step's tokens/s × the model
FLOPs per token (forward + backward, counted from the model's config by forumtune.train.compute: 2 FLOP
per matmul weight forward, 2 more for its input gradient, 2 more for a trainable (LoRA) weight's gradient,
attention over the causal half) against the GPU's dense bf16 peak, found from its device name. The
recompute of checkpointed layers is left out of MFU and counted in `hfu` beside it.

Stacks:
  plain           from_pretrained(NF4, double quant, bf16 compute) + prepare_model_for_kbit_training
                  (gradient checkpointing, non-reentrant) + LoRA r=16 alpha=32 dropout 0 all-linear
                  + bitsandbytes PagedAdamW8bit, in a minimal loop (clip 1.0), no autocast
  plain_autocast  the same under torch.autocast(bfloat16), as the HF Trainer runs it with bf16=True
  plain_bf16      plain without prepare_model_for_kbit_training's fp32 upcast of norms, embeddings and head,
                  under autocast: the precision of forumtune's fast path and unsloth, none of their kernels
                  (the reference their gradients should match to bf16 noise)
  forumtune       forumtune.train.loop.run_train on a synthetic dataset in forumtune's format
  forumtune_eager the same with train.cuda_graphs false (the layers launched kernel by kernel)
  forumtune_fp8   forumtune with train.base_matmul fp8 (the frozen base's matmuls in FP8; Ada/Hopper)
  fast*           forumtune.kernels' fast path in the minimal loop: all of it, or one part left out
                  (fast_bnbdequant: bitsandbytes' dequantize instead of kernels.nf4_dequant's;
                  fast_fp8: all of it, with the base's matmuls in FP8, kernels.fp8_matmul;
                  fast_fp8_fastaccum: the same with the FP8 GEMMs' fast accumulation, which forumtune
                  leaves off)
  unsloth         FastLanguageModel (load_in_4bit) + get_peft_model(r=16, 7 projections,
                  use_gradient_checkpointing="unsloth") in the same minimal loop

Usage (GPU):
  python benchmarks/train_throughput.py --out throughput.json
  python benchmarks/train_throughput.py --stacks plain --shapes 2x2048 --profile-out profile.json
  python benchmarks/train_throughput.py --report a.json b.json --out combined.json   # tables only
  python benchmarks/train_throughput.py --stacks forumtune,unsloth --bisect-seq --out longest.json
The model families (one shared --model-dir: each 14-19 GB model replaces the last on a 64 GiB disk; one
invocation per shape keeps each under 10 minutes; the third line is the first-step gradient check):
  export PYTHONPATH=$PWD/.peer/site:$PWD/src HF_HUB_OFFLINE=1 UNSLOTH_DISABLE_STATISTICS=1
  for p in llama-3.1-8b qwen2.5-7b gemma-2-9b; do
    a="--preset $p --model-dir /tmp/forumtune-bench/family-shape --work-dir /tmp/forumtune-bench/$p"
    python3 benchmarks/train_throughput.py $a --stacks forumtune,unsloth,plain --shapes 2x2048 \
      --deadline-s 540 --out $p-2x2048.json
    python3 benchmarks/train_throughput.py $a --stacks forumtune,unsloth,plain --shapes 1x8192 \
      --deadline-s 540 --out $p-1x8192.json
    python3 benchmarks/train_throughput.py $a --stacks plain,fast --shapes 2x2048 --cap-gib 0 --warmup 1 \
      --steps 2 --out $p-grads.json
    python3 benchmarks/train_throughput.py --report $p-2x2048.json $p-1x8192.json --out $p.json
  done
  # does 1x16384, then 1x32768, fit 7.6 GiB with the MLP in tiles (train.tile_mlp; auto is the default):
  # two trials, about 70 s on an H200 (RESULTS.md §3b)
  python benchmarks/train_throughput.py --stacks forumtune --bisect-seq --bisect-start 16384 \
    --bisect-min 16384 --bisect-max 32768 --bisect-step 16384 --warmup 2 --steps 2 --tile-mlp auto \
    --out longest-tiled.json
FP8 base matmuls (train.base_matmul fp8) beside bf16 and unsloth, then the first-step gradient check
(fast and fast_fp8 against plain's, same data and LoRA init):
  python benchmarks/train_throughput.py --stacks forumtune,forumtune_fp8,unsloth --shapes 2x2048 --out fp8.json
  python benchmarks/train_throughput.py --stacks plain,fast,fast_fp8,fast_fp8_fastaccum --shapes 2x2048 \
    --cap-gib 0 --warmup 1 --steps 2 --out fp8-grads.json
CPU logic check (seconds): python benchmarks/train_throughput.py --preset tiny --stacks plain,forumtune \
  --shapes 2x64 --cap-gib 0 --model-dir /tmp/tiny-model --work-dir /tmp/tiny-work
  (the families: --preset tiny-llama3, tiny-qwen2 or tiny-gemma2, with --stacks plain,fast,forumtune: `fast`
  is forumtune.kernels' path, which a CPU can run, and its first-step LoRA gradients are compared with plain's)
  (and the search: --stacks plain --bisect-seq --bisect-start 64 --bisect-min 32 --bisect-max 128
  --bisect-step 32 --warmup 1 --steps 1)
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common as bc

FAST_STACKS = {  # forumtune.kernels' fast path, all of it or one part left out:
    # (liger, offload, fused LoRA, CUDA graphs, recompute skips the unread down projection, Triton dequantize)
    "fast": (True, True, True, True, True, True),
    "fast_nographs": (True, True, True, False, True, True),
    "fast_noliger": (False, True, True, True, True, True),
    "fast_nooffload": (True, False, True, True, True, True),
    "fast_nofuse": (True, True, False, True, True, True),
    "fast_noskip": (True, True, True, True, False, True),
    "fast_bnbdequant": (True, True, True, True, True, False),
    "fast_fp8": (True, True, True, True, True, True),  # with the base's matmuls in FP8 (BASE_MATMUL)
    "fast_fp8_fastaccum": (True, True, True, True, True, True),  # and _scaled_mm's fast accumulation
}
FORUMTUNE_STACKS = ("forumtune", "forumtune_eager", "forumtune_fp8")  # forumtune's own trainer
STACKS = ("plain", "plain_autocast", "plain_bf16", *FORUMTUNE_STACKS, *FAST_STACKS, "unsloth")
BASE_MATMUL = {
    "fast_fp8": "fp8",
    "fast_fp8_fastaccum": "fp8",
    "forumtune_fp8": "fp8",
}  # train.base_matmul; the other stacks' is bf16
SAME_COMPUTATION = {
    "fast": "fast_nographs",
    "forumtune": "forumtune_eager",
}  # graphs replay the eager kernels
GRAD_SAMPLE = "first_step_lora_grads.safetensors"
LATE_GRAD_SAMPLE = "step3_lora_grads.safetensors"  # after the graphs were captured (step 2)
LORA_R = 16
LORA_ALPHA = 32
LEARNING_RATE = 2e-4
SEED = 42
UNSLOTH_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# =============================================================================== worker side


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _compute_dtype():
    import torch

    return torch.bfloat16 if torch.cuda.is_available() else torch.float32


def _collate(records: list[dict[str, Any]], indices: list[int], device) -> dict[str, Any]:
    import torch

    ids = torch.tensor([records[i]["input_ids"] for i in indices], dtype=torch.long)
    labels = torch.tensor([records[i]["labels"] for i in indices], dtype=torch.long)
    return {
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids).to(device),
        "labels": labels.to(device),
    }


def load_nf4_base(spec: dict[str, Any]):
    """The random-weight model in NF4 + double quant, bf16 compute (fp32 on a CPU), SDPA (eager for Gemma-2,
    see bench_common.Shape.attn_implementation), no KV cache."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    torch.manual_seed(spec.get("seed", SEED))
    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=_compute_dtype(),
    )
    model = AutoModelForCausalLM.from_pretrained(
        spec["model_dir"],
        quantization_config=quant,
        dtype=_compute_dtype(),
        attn_implementation=spec.get("attn", "sdpa"),
        device_map={"": 0} if _device().type == "cuda" else {"": "cpu"},
    )
    model.config.use_cache = False
    return model


def load_plain(spec: dict[str, Any]):
    """The plain transformers + peft + bitsandbytes QLoRA setup (what forumtune does today, written
    out without forumtune)."""
    from peft import prepare_model_for_kbit_training

    model = load_nf4_base(spec)
    model = prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=spec.get("gradient_checkpointing", True),
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )
    return lora_and_optimizer(model, spec.get("lora_dropout", 0.0))


def load_plain_bf16(spec: dict[str, Any]):
    """`plain` with the 16-bit parameters left in bf16: frozen base, non-reentrant checkpointing."""
    model = load_nf4_base(spec)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    return lora_and_optimizer(model, spec.get("lora_dropout", 0.0))


def lora_and_optimizer(model, dropout: float = 0.0, optimizer_class=None):
    """LoRA r=16 alpha=32 on all linear layers (dropout 0 unless --lora-dropout), and paged 8-bit AdamW
    (bitsandbytes' unless another class is given)."""
    import bitsandbytes as bnb
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        model,
        LoraConfig(
            r=LORA_R,
            lora_alpha=LORA_ALPHA,
            lora_dropout=dropout,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        ),
    )
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    return model, (optimizer_class or bnb.optim.PagedAdamW8bit)(params, lr=LEARNING_RATE, weight_decay=0.0)


def load_fast(spec: dict[str, Any]):
    """forumtune's fast path (forumtune.kernels) on the same model and LoRA as `plain`, with forumtune's
    paged 8-bit AdamW (bitsandbytes' update as one kernel per param group, without its waits for the GPU)."""
    from forumtune.kernels import fp8_matmul, lora_linear
    from forumtune.kernels.liger import apply_liger_kernels
    from forumtune.kernels.lora_linear import use_fused_lora
    from forumtune.train.allocator import use_expandable_segments
    from forumtune.train.layer_checkpointing import use_layer_checkpointing
    from forumtune.train.layer_graphs import LayerGraphs
    from forumtune.train.optim import PagedAdamW8bit as optimizer_class
    from forumtune.train.precision import prepare_for_qlora

    use_liger, offload, fuse, use_graphs, skip, triton_dequant = FAST_STACKS[spec["stack"]]
    fused_options = lora_linear.FusedLoRA(
        dequantize="triton" if triton_dequant else "bitsandbytes",
        skip_unread_outputs=skip,
        base_matmul=BASE_MATMUL.get(spec["stack"], "bf16"),
    )
    allocator = use_expandable_segments() if _device().type == "cuda" else "CPU"
    fp8_matmul.FAST_ACCUM = spec["stack"] == "fast_fp8_fastaccum"  # this worker process only
    model = load_nf4_base(spec)
    kernels = apply_liger_kernels(model) if use_liger else []
    model, optimizer = lora_and_optimizer(
        prepare_for_qlora(model, gradient_checkpointing=True), spec.get("lora_dropout", 0.0), optimizer_class
    )
    graphs = LayerGraphs(_device()) if use_graphs else None
    layers = use_layer_checkpointing(model, offload=offload, graphs=graphs)
    fused = use_fused_lora(model, fused_options) if fuse else 0
    model.layer_graphs = graphs
    return (
        model,
        optimizer,
        [
            allocator,
            f"liger kernels: {kernels}",
            f"checkpointed layers: {layers} (offload {offload})",
            f"fused LoRA projections: {fused}",
            f"CUDA graphs: {use_graphs}",
            f"recompute skips unread outputs: {skip}",
            check_dequantize(model, fused_options.dequantize),
            *([check_fp8_dequantize(model)] if fused_options.base_matmul == "fp8" else []),
        ],
    )


def check_dequantize(model, kernel: str) -> str:
    """forumtune's dequantization (bitsandbytes' kernels called directly on CUDA) against bitsandbytes'
    own dequantize_4bit, on every 4-bit projection of the first decoder layer: they must agree exactly."""
    import torch
    from bitsandbytes.functional import dequantize_4bit
    from bitsandbytes.nn import Linear4bit

    from forumtune.kernels.lora_linear import _cuda_kernels, dequantize_weight

    layers = [m for n, m in model.named_modules() if isinstance(m, Linear4bit) and ".layers.0." in n]
    worst = max(
        float(
            (
                dequantize_weight(m.weight, m.weight.quant_state, torch.bfloat16, kernel)
                - dequantize_4bit(m.weight, m.weight.quant_state).to(torch.bfloat16)
            )
            .abs()
            .max()
        )
        for m in layers
    )
    from forumtune.kernels import nf4_dequant

    if kernel == "triton" and nf4_dequant.supports(layers[0].weight, layers[0].weight.quant_state):
        path = "Triton kernel"
    else:
        path = "direct kernels" if _cuda_kernels() and layers[0].weight.is_cuda else "torch.ops"
    return f"dequantize ({path}) vs bitsandbytes on {len(layers)} projections: max abs diff {worst}"


def check_fp8_dequantize(model) -> str:
    """kernels.fp8_matmul's NF4-to-e4m3 kernel (both layouts) against its torch reference (bitsandbytes'
    fp32 dequantization ÷ the row scales, cast) on the first decoder layer's projections: the same bytes."""
    import torch
    from bitsandbytes.nn import Linear4bit

    from forumtune.kernels import fp8_matmul

    layers = [m for n, m in model.named_modules() if isinstance(m, Linear4bit) and ".layers.0." in n]
    differing = 0
    kernel = all(fp8_matmul.triton_dequantizes(m.weight, m.weight.quant_state) for m in layers)
    for m in layers:
        for transposed in (False, True):
            ours = fp8_matmul.dequantize_for_fp8(m.weight, m.weight.quant_state, transposed=transposed)
            ref = fp8_matmul.reference_dequantize_fp8(m.weight, m.weight.quant_state, transposed=transposed)
            differing += int((ours.view(torch.uint8) != ref.view(torch.uint8)).sum())
    rows = torch.randn(512, 4096, device=layers[0].weight.device, dtype=torch.bfloat16)
    rows[:, :8] *= 50  # outlier channels
    for dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
        ours, ours_scales = fp8_matmul.quantize_rows(rows, dtype)
        ref, ref_scales = fp8_matmul.reference_quantize_rows(rows, dtype)
        differing += int((ours.view(torch.uint8) != ref.view(torch.uint8)).sum())
        differing += int((ours_scales != ref_scales).sum())
    path = "Triton kernels" if kernel else "torch references"
    return (
        f"fp8 dequantize and row quantization ({path}) vs torch references on {len(layers)} projections "
        f"and 512x4096 activations: {differing} bytes or scales differ"
    )


def save_grad_sample(model, path: Path, kinds: tuple[str, ...] = ("lora_B",)) -> None:
    """LoRA gradients of the first and last decoder layer, for comparing stacks. At step 1 only lora_B's
    (lora_A's are zero, since B starts at zero)."""
    from safetensors.torch import save_file

    layers = (".layers.0.", f".layers.{model.config.num_hidden_layers - 1}.")
    named = {
        n: p.grad.detach().float().cpu().contiguous()
        for n, p in model.named_parameters()
        if p.grad is not None and any(k in n for k in kinds) and any(layer in n for layer in layers)
    }
    save_file(named, str(path))


def load_unsloth(spec: dict[str, Any]):
    import torch
    from unsloth import FastLanguageModel

    notes = []
    kwargs = {
        "model_name": spec["model_dir"],
        "max_seq_length": spec["seq"],
        "dtype": torch.bfloat16,
        "load_in_4bit": True,
        "local_files_only": True,
    }
    try:
        model, _tokenizer = FastLanguageModel.from_pretrained(**kwargs)
    except Exception as exc:
        if bc.is_oom(exc):
            raise
        notes.append(
            f"from_pretrained failed with default options ({type(exc).__name__}: {exc}); "
            "retried with fix_tokenizer=False"
        )
        model, _tokenizer = FastLanguageModel.from_pretrained(**kwargs, fix_tokenizer=False)
    torch.manual_seed(spec.get("seed", SEED))
    model = FastLanguageModel.get_peft_model(
        model,
        r=LORA_R,
        target_modules=UNSLOTH_TARGETS,
        lora_alpha=LORA_ALPHA,
        lora_dropout=0.0,
        bias="none",
        use_gradient_checkpointing="unsloth",
        random_state=spec.get("seed", SEED),
        max_seq_length=spec["seq"],
    )
    model.train()
    import bitsandbytes as bnb

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = bnb.optim.PagedAdamW8bit(params, lr=LEARNING_RATE, weight_decay=0.0)
    return model, optimizer, notes


def train_steps(
    model,
    optimizer,
    records,
    order,
    *,
    autocast: bool = False,
    on_step=None,
    grad_sample: Path | None = None,
    late_grad_sample: Path | None = None,
) -> dict[str, Any]:
    """The minimal loop: forward with labels, backward, clip to 1.0, optimizer step. Each step is timed
    between device synchronizations."""
    import torch

    device = _device()
    params = [p for p in model.parameters() if p.requires_grad]
    losses, seconds, tokens = [], [], []
    timeline = None
    for step, indices in enumerate(order):
        batch = _collate(records, indices, device)
        bc.synchronize()
        marks = StepMarks(enabled=step == len(order) - 1 and device.type == "cuda")
        started = time.perf_counter()
        context = (
            torch.autocast(device_type=device.type, dtype=torch.bfloat16)
            if autocast
            else contextlib.nullcontext()
        )
        with context:
            loss = model(**batch).loss
        marks.mark("forward")
        loss.backward()
        marks.mark("backward")
        if grad_sample is not None and not seconds:
            save_grad_sample(model, grad_sample)
        if late_grad_sample is not None and len(seconds) == 2:
            save_grad_sample(model, late_grad_sample, ("lora_A", "lora_B"))
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        marks.mark("clip")
        optimizer.step()
        marks.mark("optimizer")
        graphs = getattr(model, "layer_graphs", None)
        optimizer.zero_grad(set_to_none=graphs is None)
        if graphs is not None:
            graphs.after_step()
        marks.mark("zero_grad")
        bc.synchronize()
        seconds.append(time.perf_counter() - started)
        timeline = marks.report() or timeline
        losses.append(float(loss.detach()))
        tokens.append(int(batch["attention_mask"].sum()))
        if on_step:
            on_step(len(seconds))
    return {"losses": losses, "step_s": seconds, "tokens": tokens, "last_step_timeline": timeline}


class StepMarks:
    """When the host finished queueing each phase of a step, against when the GPU finished running it (CUDA
    events), in ms from the step's start. A GPU end far behind the host's means the host ran ahead (its
    time is hidden); a GPU end just after the host's means the GPU waited for the host."""

    def __init__(self, enabled: bool):
        import torch

        self.enabled = enabled
        self.marks: list[tuple[str, float, Any]] = []
        if enabled:
            self.start_event = torch.cuda.Event(enable_timing=True)
            self.start_event.record()
            self.started = time.perf_counter()

    def mark(self, phase: str) -> None:
        if self.enabled:
            import torch

            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append((phase, time.perf_counter(), event))

    def report(self) -> dict[str, dict[str, float]] | None:
        if not self.enabled:
            return None
        return {
            phase: {
                "host_ms": round((at - self.started) * 1e3, 2),
                "gpu_ms": round(self.start_event.elapsed_time(event), 2),
            }
            for phase, at, event in self.marks
        }


def summarise_steps(result: dict[str, Any], warmup: int) -> dict[str, Any]:
    timed_s = sum(result["step_s"][warmup:])
    timed_tokens = sum(result["tokens"][warmup:])
    return {
        "tokens_per_s": timed_tokens / timed_s if timed_s else None,
        "timed_steps": len(result["step_s"][warmup:]),
        "step_s": [round(s, 4) for s in result["step_s"]],
        "losses": result["losses"],
        "first_loss": result["losses"][0] if result["losses"] else None,
        "last_step_timeline": result.get("last_step_timeline"),
    }


def run_minimal_loop(spec: dict[str, Any]) -> dict[str, Any]:
    records = bc.read_records(Path(spec["dataset_dir"]))
    order = bc.batch_order(
        len(records), spec["batch"], spec.get("seed", SEED), spec["warmup"] + spec["steps"]
    )
    started = time.perf_counter()
    notes: list[str] = []
    if spec["stack"] == "unsloth":
        model, optimizer, notes = load_unsloth(spec)
    elif spec["stack"] in FAST_STACKS:
        model, optimizer, notes = load_fast(spec)
    elif spec["stack"] == "plain_bf16":
        model, optimizer = load_plain_bf16(spec)
    else:
        model, optimizer = load_plain(spec)
    load_s = time.perf_counter() - started
    after_load = bc.cuda_memory()
    work = Path(spec["work_dir"])
    work.mkdir(parents=True, exist_ok=True)
    timeline: list[dict[str, float]] = []
    tracer = (
        StepMemoryTracer(spec["warmup"] + 2)
        if spec.get("memory_trace") and _device().type == "cuda"
        else None
    )

    def on_step(done: int) -> None:
        timeline.append({k: round(v) for k, v in bc.cuda_memory().items()})
        if tracer is not None:
            tracer.after_step(done)

    result = train_steps(
        model,
        optimizer,
        records,
        order,
        autocast=spec["stack"] in ("plain_autocast", "plain_bf16") or spec["stack"] in FAST_STACKS,
        grad_sample=work / GRAD_SAMPLE,
        late_grad_sample=work / LATE_GRAD_SAMPLE,
        on_step=on_step,
    )
    out = {
        "load_s": round(load_s, 1),
        "memory_after_load": after_load,
        **summarise_steps(result, spec["warmup"]),
        "memory_after_each_step": timeline,
    }
    if tracer is not None:
        out["memory_trace"] = tracer.report
    if spec["stack"] == "unsloth":
        out["notes"] = notes + unsloth_facts()
    elif notes:
        out["notes"] = notes
    out["grad_sample"] = str(work / GRAD_SAMPLE)
    out["late_grad_sample"] = str(work / LATE_GRAD_SAMPLE)
    graphs = getattr(model, "layer_graphs", None)
    if graphs is not None:
        out["cuda_graphs"] = {
            "captured": graphs.captured,
            "shapes": len(graphs.statics),
            "disabled": graphs.disabled,
        }
        if graphs.captured and _device().type == "cuda":
            out["memory_before_check"] = bc.cuda_memory()
            out["memory_by_pool"] = memory_by_pool()
            out["graphs_vs_eager_same_batch"] = check_graphs_in_process(model, records, order[-1])
    return out


class StepMemoryTracer:
    """Records the allocator's events during one step (`step`, 1-based) and reports the moment the most
    memory was in use: how much above the step's start, and the largest blocks alive then, each with
    the innermost Python frames outside torch that asked for it."""

    def __init__(self, step: int) -> None:
        self.step, self.report = step, None

    def after_step(self, done: int) -> None:
        import torch

        if done == self.step - 1:
            self.start_allocated = torch.cuda.memory_allocated()
            torch.cuda.memory._record_memory_history(
                enabled="all", context="alloc", stacks="python", max_entries=200_000
            )
        elif done == self.step:
            snapshot = torch.cuda.memory._snapshot()
            torch.cuda.memory._record_memory_history(enabled=None)
            self.report = self.analyse(snapshot["device_traces"][torch.cuda.current_device()])

    def analyse(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        live: dict[int, dict[str, Any]] = {}
        current = peak = 0
        at_peak: list[dict[str, Any]] = []
        peak_event: dict[str, Any] = {}
        for event in events:
            if event["action"] == "alloc":
                live[event["addr"]] = event
                current += event["size"]
            elif event["action"] == "free_completed" and event["addr"] in live:
                current -= live.pop(event["addr"])["size"]
            if current > peak:
                peak, at_peak, peak_event = current, list(live.values()), event
        biggest = sorted(at_peak, key=lambda e: -e["size"])[:24]
        return {
            "step": self.step,
            "start_allocated_mib": round(self.start_allocated / 2**20),
            "peak_above_start_mib": round(peak / 2**20),
            "events": len(events),
            "peak_reached_by": {
                "mib": round(peak_event.get("size", 0) / 2**20, 1),
                "frames": self.frames(peak_event, 8),
            },
            "largest_at_peak": [
                {"mib": round(e["size"] / 2**20, 1), "stream": e.get("stream"), "frames": self.frames(e)}
                for e in biggest
            ],
        }

    @staticmethod
    def frames(event: dict[str, Any], count: int = 4) -> list[str]:
        kept = [
            f"{Path(f['filename']).name}:{f['line']} {f['name']}"
            for f in event.get("frames", [])
            if "/torch/" not in f["filename"] or "checkpoint" in f["filename"]
        ]
        return kept[:count]


def memory_by_pool() -> dict[str, Any]:
    """Reserved and allocated MiB per allocator pool and stream: the graphs' private pool against the
    ordinary one."""
    import torch

    pools: dict[str, dict[str, float]] = {}
    for segment in torch.cuda.memory_snapshot():
        key = f"pool {segment.get('segment_pool_id')} stream {segment.get('stream')} {segment.get('segment_type')}"
        entry = pools.setdefault(
            key, {"segments": 0, "reserved_mib": 0.0, "allocated_mib": 0.0, "largest_mib": 0.0}
        )
        entry["segments"] += 1
        entry["reserved_mib"] += segment["total_size"] / 2**20
        entry["allocated_mib"] += segment["allocated_size"] / 2**20
        entry["largest_mib"] = max(entry["largest_mib"], segment["total_size"] / 2**20)
    return pools


def check_graphs_in_process(model, records, indices) -> dict[str, Any]:
    """One more forward + backward on the last batch, from the same weights and RNG state: replayed
    graphs, then eager twice (the second eager run measures the run-to-run noise of the GPU kernels).
    Loss and every LoRA gradient, relative to the first eager run."""
    import torch

    graphs, batch = model.layer_graphs, _collate(records, indices, _device())
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    runs = {}
    for mode in ("graphs", "eager", "eager_again"):
        graphs.active = mode == "graphs"
        for p in params.values():
            p.grad = None
        device = _device()
        rng = torch.cuda.get_rng_state() if device.type == "cuda" else torch.get_rng_state()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        if device.type == "cuda":
            torch.cuda.set_rng_state(rng)
        else:
            torch.set_rng_state(rng)
        runs[mode] = (float(loss), {n: p.grad.detach().float().cpu() for n, p in params.items()})
    graphs.active = True
    _, reference = runs["eager"]
    result = {}
    for mode in ("graphs", "eager_again"):
        loss, grads = runs[mode]
        errors = relative_errors(grads, reference)
        result[mode] = {
            "loss": loss,
            "loss_rel_diff": abs(loss - runs["eager"][0]) / abs(runs["eager"][0]),
            **errors,
        }
        print(
            f"same batch, {mode} vs eager: loss rel diff {result[mode]['loss_rel_diff']:.2e}; LoRA grads overall "
            f"rel error {errors['overall_rel_error']:.2e}, worst {errors['worst_rel_error']:.2e} over "
            f"{errors['tensors']} tensors",
            flush=True,
        )
    return result


def unsloth_facts() -> list[str]:
    facts = []
    try:
        from unsloth.models import _utils as unsloth_utils

        facts.append(
            f"xformers available: {getattr(unsloth_utils, 'HAS_XFORMERS', None)}; "
            f"flash-attn available: {getattr(unsloth_utils, 'HAS_FLASH_ATTENTION', None)}"
        )
    except Exception as exc:  # noqa: BLE001
        facts.append(f"could not read unsloth's attention backends: {exc}")
    return facts


class TrainStepMarks:
    """StepMarks for forumtune's own train loop, by wrapping its functions: the last step's host and GPU
    times after the batch is on its way, the forward, the backward, the clip, the optimizer and the step's
    end, plus the host time between the previous step's end and this one's start (the GPU idles then)."""

    def __init__(self, last_step: int):
        from forumtune.train import loop

        self.loop, self.last_step, self.calls = loop, last_step, 0
        self.marks = StepMarks(enabled=False)
        self.previous_end = None
        self.between_steps_ms = None
        train_step, clip, to_device = loop.train_step, loop.clip_gradients, loop.to_device

        def timed_train_step(run, batches):
            self.calls += 1
            if self.calls == self.last_step:
                self.between_steps_ms = round((time.perf_counter() - self.previous_end) * 1e3, 2)
                self.marks = StepMarks(enabled=True)
                optimizer_step = run.optimizer.step

                def marked_optimizer_step(*args, **kwargs):
                    out = optimizer_step(*args, **kwargs)
                    self.marks.mark("optimizer")
                    return out

                run.optimizer.step = marked_optimizer_step
                hook = run.model.register_forward_hook(lambda *_: self.marks.mark("forward"))
            result = train_step(run, batches)
            self.marks.mark("end (after the step's read of the GPU)")
            if self.calls == self.last_step:
                hook.remove()
                run.optimizer.step = optimizer_step
            self.previous_end = time.perf_counter()
            return result

        def marked_clip(run):
            self.marks.mark("backward")
            norm = clip(run)
            self.marks.mark("clip")
            return norm

        def marked_to_device(batch, device):
            moved = to_device(batch, device)
            self.marks.mark("batch to device")
            return moved

        loop.train_step, loop.clip_gradients, loop.to_device = timed_train_step, marked_clip, marked_to_device

    def report(self) -> dict[str, Any] | None:
        marks = self.marks.report()
        return marks and {"host_ms_between_steps": self.between_steps_ms, **marks}


def sample_after_each_step(tracer: StepMemoryTracer | None = None) -> None:
    """Read the card's memory after each of forumtune's train steps (a sample of the process's whole use),
    and hand each step's end to `tracer`."""
    from forumtune.train import loop

    train_step = loop.train_step
    done = 0

    def sampled_train_step(run, batches):
        nonlocal done
        if done == 0 and tracer is not None:
            tracer.after_step(0)
        result = train_step(run, batches)
        done += 1
        bc.cuda_memory()
        if tracer is not None:
            tracer.after_step(done)
        return result

    loop.train_step = sampled_train_step


def run_forumtune(spec: dict[str, Any]) -> dict[str, Any]:
    from rich.console import Console

    from forumtune.config import load_config
    from forumtune.train.loop import run_train

    work = Path(spec["work_dir"])
    steps = spec["warmup"] + spec["steps"]
    config_path = bc.write_forumtune_config(
        work / "config.yaml",
        model_dir=Path(spec["model_dir"]),
        runs_dir=work / "runs",
        batch=spec["batch"],
        seq_len=spec["seq"],
        steps=steps,
        gradient_checkpointing=spec.get("gradient_checkpointing", "offload"),
        compute_dtype="bfloat16" if _device().type == "cuda" else "float32",
        device=_device().type,
        seed=spec.get("seed", SEED),
        learning_rate=LEARNING_RATE,
        train_extra=forumtune_train_settings(spec),
        lora_dropout=spec.get("lora_dropout", 0.0),
        attn_implementation=spec.get("attn", "sdpa"),
    )
    card = spec.get("card_gib")  # the auto settings settle as on that card, not on the one the run is on
    config = load_config(
        config_path, [f"plan.vram_gib={card}", f"plan.usable_gib={spec['budget_gib']}"] if card else []
    )
    planned = planner_figures(config)
    run_dir = work / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    timeline = TrainStepMarks(steps) if _device().type == "cuda" else None
    tracer = (
        StepMemoryTracer(spec["warmup"] + 2)
        if spec.get("memory_trace") and _device().type == "cuda"
        else None
    )
    sample_after_each_step(tracer)
    summary = run_train(config, Path(spec["dataset_dir"]), run_dir, Console(file=sys.stdout, width=120))
    total_s = time.perf_counter() - started
    by_pool = memory_by_pool() if _device().type == "cuda" else None
    with (run_dir / "metrics.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "train"]
    warmup = spec["warmup"]
    elapsed = [float(r["elapsed_s"]) for r in rows]
    tokens = [int(r["tokens"]) for r in rows]
    per_step = [int(r["tokens"]) / float(r["tokens_per_s"]) for r in rows]
    window = elapsed[-1] - (elapsed[warmup - 1] if warmup else 0.0)
    return {
        "tokens_per_s": sum(tokens[warmup:]) / window if window > 0 else None,
        "timed_steps": len(rows) - warmup,
        "step_s": [round(s, 4) for s in per_step],
        "losses": [float(r["loss"]) for r in rows],
        "first_loss": float(rows[0]["loss"]),
        "metrics_peak_memory_mib": float(rows[-1]["peak_memory_mib"])
        if rows[-1]["peak_memory_mib"]
        else None,
        "run_train_s": round(total_s, 1),
        "summary": summary,
        "memory_by_pool": by_pool,
        "last_step_timeline": timeline.report() if timeline else None,
        "memory_trace": tracer.report if tracer else None,
        "planned": planned,
        "tokens_per_s_column_mean": sum(float(r["tokens_per_s"]) for r in rows[warmup:])
        / max(1, len(rows) - warmup),
    }


def planner_figures(config) -> dict[str, Any]:
    """What the memory planner says of this run before it starts, with the auto settings settled as the
    run settles them (for --card-gib's card, else for the GPU it runs on): the allocator peak and the whole
    process (GiB), part by part."""
    from forumtune.train.loading import settled_for_card
    from forumtune.train.plan import GIB, plan_memory

    settled = settled_for_card(config, _device())
    plan = plan_memory(settled, config.plan.vram_gib, usable_gib=config.plan.usable_gib)
    return {
        "settings": {
            "split_attention": plan.split_attention,
            "cuda_graphs": plan.cuda_graphs,
            "tile_mlp": plan.tile_mlp,
        },
        "allocated_gib": plan.allocated / GIB,
        "whole_gib": plan.total / GIB,
        "parts_gib": {name: size / GIB for name, size in {**plan.parts, **plan.card_parts}.items()},
    }


def forumtune_train_settings(spec: dict[str, Any]) -> dict[str, Any]:
    """The train.* keys the forumtune stacks set beyond the shared benchmark config."""
    settings: dict[str, Any] = {"base_matmul": BASE_MATMUL.get(spec["stack"], "bf16")}
    if spec["stack"] == "forumtune_eager":
        settings["cuda_graphs"] = False
    for key in ("tile_mlp", "split_attention", "cuda_graphs"):
        if spec.get(key) is not None:  # else the config's default (auto)
            settings[key] = spec[key]
    if spec.get("embeddings_on_host") is not None:  # else the config's default (auto)
        settings["embeddings_on_host"] = bc.EMBEDDINGS_ON_HOST[spec["embeddings_on_host"]]
    return settings


def run_build(spec: dict[str, Any]) -> dict[str, Any]:
    shape = bc.PRESETS[spec["preset"]]
    built = bc.ensure_model(Path(spec["model_dir"]), shape)
    return {"build": built, "env": bc.environment()}


def worker(spec: dict[str, Any]) -> None:
    result_path = Path(spec["result_path"])
    result: dict[str, Any] = {
        "stack": spec.get("stack"),
        "batch": spec.get("batch"),
        "seq": spec.get("seq"),
        "cap_gib": spec.get("cap_gib") or None,
        "base_matmul": BASE_MATMUL.get(spec.get("stack"), "bf16"),
    }
    if spec["stack"] != "build":
        bc.start_device_use()  # the card's idle free memory, before anything here touches CUDA
    try:
        if spec["stack"] == "unsloth":
            os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
            import unsloth  # noqa: F401  (must be imported before transformers and peft)
        import torch

        if spec["stack"] not in ("build",):
            result["cap"] = bc.apply_memory_cap(spec.get("cap_gib"))
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
        if spec["stack"] == "build":
            result.update(run_build(spec))
        elif spec["stack"] == "profile":
            import profile_step

            result.update(profile_step.run(spec, sys.modules[__name__]))
        elif spec["stack"] in FORUMTUNE_STACKS:
            result.update(run_forumtune(spec))
        else:
            result.update(run_minimal_loop(spec))
        result["status"] = "ok"
    except BaseException as exc:  # noqa: BLE001 - every failure is a result
        result["status"] = "oom" if bc.is_oom(exc) else "error"
        result["error"] = f"{type(exc).__name__}: {str(exc)[:1500]}"
        if result["status"] == "error":
            import traceback

            result["traceback"] = traceback.format_exc()[-4000:]
    memory = result.get("memory_before_check") or bc.cuda_memory()  # the check's extra pass is not training
    if memory:
        result["peak_allocated_gib"] = memory["max_allocated_mib"] / 1024
        result["peak_reserved_gib"] = memory["max_reserved_mib"] / 1024
        result["memory_end"] = memory
    whole = bc.whole_process_peak(memory)
    if whole:
        result["device_use"] = whole
        result["whole_peak_gib"] = whole["whole_peak_mib"] / 1024
    result_path.write_text(json.dumps(result, indent=1, default=str))


# =========================================================================== orchestrator side


def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    script = Path(__file__).resolve()
    model_dir = Path(args.model_dir)
    work_dir = Path(args.work_dir)
    logs = work_dir / "logs"
    shape = bc.PRESETS[args.preset]
    payload: dict[str, Any] = {
        "benchmark": "train_throughput",
        "preset": args.preset,
        "shape": shape.__dict__,
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "cap_gib": args.cap_gib,
        "lora": {"r": LORA_R, "alpha": LORA_ALPHA, "dropout": args.lora_dropout},
        "tile_mlp": args.tile_mlp,
        "split_attention": args.split_attention,
        "cuda_graphs": args.cuda_graphs,
        "card_gib": args.card_gib,
        "embeddings_on_host": args.embeddings_on_host,
        "runs": [],
    }

    def remaining() -> float:
        return args.deadline_s - (time.perf_counter() - started)

    build = bc.run_worker(
        script,
        {"tag": "build", "stack": "build", "preset": args.preset, "model_dir": str(model_dir)},
        logs,
        timeout_s=max(60.0, remaining()),
    )
    payload["env"] = build.get("env")
    payload["model_build"] = build.get("build") or build
    print(f"model: {model_dir} {payload['model_build']}", flush=True)
    if build.get("status") != "ok":
        bc.write_json(args.out, payload)
        raise SystemExit(f"building the model failed: {build.get('error')}\n{build.get('log_tail', '')}")

    shapes = [bc.parse_shape_arg(s) for s in args.shapes.split(",") if s]
    stacks = [s for s in args.stacks.split(",") if s]
    for stack in stacks:
        if stack not in STACKS:
            raise SystemExit(f"unknown stack {stack!r}; choose from {STACKS}")
    if args.bisect_seq:
        shapes = []  # the sequences are the search's
        payload["bisect"] = {stack: bisect_stack(args, stack, script, payload, remaining) for stack in stacks}
    for batch, seq in shapes:
        dataset = bc.write_dataset(
            work_dir / f"data-{batch}x{seq}",
            shape.vocab,
            seq,
            count=max(8, batch * (args.warmup + args.steps)),
        )
        for stack in stacks:
            caps = [args.cap_gib or None]
            while caps:
                cap = caps.pop(0)
                tag = f"{stack}-{batch}x{seq}-{'cap' + str(cap) if cap else 'nocap'}"
                if remaining() < args.min_run_s:
                    payload["runs"].append(
                        {
                            "stack": stack,
                            "batch": batch,
                            "seq": seq,
                            "cap_gib": cap,
                            "status": "skipped",
                            "error": "out of time for this invocation",
                        }
                    )
                    print(f"{tag}: skipped (time)", flush=True)
                    continue
                spec = {
                    "tag": tag,
                    "stack": stack,
                    "model_dir": str(model_dir),
                    "dataset_dir": str(dataset),
                    "work_dir": str(work_dir / tag),
                    "batch": batch,
                    "seq": seq,
                    "warmup": args.warmup,
                    "steps": args.steps,
                    "cap_gib": cap,
                    "seed": SEED,
                    "lora_dropout": args.lora_dropout,
                    "tile_mlp": args.tile_mlp,
                    "split_attention": args.split_attention,
                    "cuda_graphs": args.cuda_graphs,
                    "card_gib": args.card_gib,
                    "budget_gib": args.budget_gib,
                    "embeddings_on_host": args.embeddings_on_host,
                    "memory_trace": args.memory_trace,
                    "attn": shape.attn_implementation,
                }
                result = bc.run_worker(
                    script, spec, logs, timeout_s=min(args.run_timeout_s, remaining()), extra_env=EXTRA_ENV
                )
                result.update({"stack": stack, "batch": batch, "seq": seq, "cap_gib": cap})
                payload["runs"].append(result)
                print(
                    f"{tag}: {result['status']} tok/s={bc.fmt(result.get('tokens_per_s'))} "
                    f"peak={bc.fmt(result.get('peak_allocated_gib'), 2)} GiB wall={result.get('wall_s')}s "
                    f"{result.get('error', '')[:300]}",
                    flush=True,
                )
                if result["status"] == "error":
                    print(result.get("traceback", result.get("log_tail", ""))[-2500:], flush=True)
                if result["status"] == "oom" and cap and args.uncapped_on_oom:
                    caps.append(None)
                bc.write_json(args.out, payload)
        same_shape = [r for r in payload["runs"] if (r["batch"], r["seq"]) == (batch, seq)]
        for reference in ("plain", "plain_bf16"):
            compare_first_step_grads(same_shape, reference)
        compare_graphs_with_eager([r for r in payload["runs"] if (r["batch"], r["seq"]) == (batch, seq)])
        bc.write_json(args.out, payload)
    if args.profile_out:
        batch, seq = bc.parse_shape_arg(args.profile_shape)
        dataset = bc.write_dataset(
            work_dir / f"data-{batch}x{seq}",
            shape.vocab,
            seq,
            count=max(8, batch * (args.warmup + args.steps)),
        )
        spec = {
            "tag": "profile",
            "stack": "profile",
            "model_dir": str(model_dir),
            "dataset_dir": str(dataset),
            "batch": batch,
            "seq": seq,
            "warmup": args.warmup,
            "seed": SEED,
            "cap_gib": None,
            "vocab": shape.vocab,
            "lora_r": LORA_R,
            "head_dim": shape.head_size,
            "preset": args.preset,
            "attn": shape.attn_implementation,
            "trace_path": args.trace_out,
            "profile_stack": args.profile_stack,
        }
        if remaining() >= args.min_run_s:
            profile = bc.run_worker(
                script, spec, logs, timeout_s=min(args.run_timeout_s, remaining()), extra_env=EXTRA_ENV
            )
        else:
            profile = {"status": "skipped", "error": "out of time for this invocation"}
        payload["profile"] = profile
        bc.write_json(args.profile_out, {"env": payload.get("env"), "profile": profile})
        if profile.get("status") == "ok":
            import profile_step

            profile_step.print_profile(profile)
        else:
            print(
                f"profile: {profile.get('status')} {profile.get('error')}\n"
                f"{profile.get('traceback', profile.get('log_tail', ''))[-2500:]}",
                flush=True,
            )
    payload["seconds"] = round(time.perf_counter() - started, 1)
    bc.write_json(args.out, payload)
    return payload


EXTRA_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "UNSLOTH_DISABLE_STATISTICS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def longest_fitting(fits, start: int, low: int, high: int, step: int) -> int | None:
    """The longest sequence, a multiple of `step` in [low, high], for which fits(seq) holds, taking a
    shorter sequence to fit whenever a longer one does: from `start`, double (or halve) until the answer
    changes, then halve the gap down to `step`. None when even `low` does not fit."""
    good = bad = None
    seq = start
    while good is None or bad is None:
        if fits(seq):
            good = seq
            if seq >= high:
                return good
            seq = min(high, seq * 2)
        else:
            bad = seq
            if seq <= low:
                return good
            seq = max(low, seq // 2 // step * step)
        if good is not None and bad is not None and good > bad:  # not monotone: trust the longest that fit
            return good
    while bad - good > step:
        middle = (good + bad) // 2 // step * step
        if middle <= good:
            break
        if fits(middle):
            good = middle
        else:
            bad = middle
    return good


def bisect_stack(
    args: argparse.Namespace, stack: str, script: Path, payload: dict[str, Any], remaining
) -> dict[str, Any]:
    """The longest sequence (batch 1) whose whole-process peak stays within --budget-gib for `stack`,
    each trial in its own process under the allocator cap (--cap-gib, by default the budget, so that the
    allocator frees its cache under pressure as it would on the real card). A trial fits when it runs
    and its peak, as the card counts it, is within the budget."""
    shape = bc.PRESETS[args.preset]
    work_dir = Path(args.work_dir)
    cap = args.cap_gib or None
    trials: list[dict[str, Any]] = []

    def fits(seq: int) -> bool:
        tag = f"bisect-{stack}-1x{seq}"
        if remaining() < args.min_run_s:
            trials.append({"seq": seq, "status": "skipped"})
            raise TimeoutError(f"{tag}: out of time for this invocation")
        dataset = bc.write_dataset(
            work_dir / f"data-1x{seq}", shape.vocab, seq, count=max(8, args.warmup + args.steps)
        )
        spec = {
            "tag": tag,
            "stack": stack,
            "model_dir": args.model_dir,
            "dataset_dir": str(dataset),
            "work_dir": str(work_dir / tag),
            "batch": 1,
            "seq": seq,
            "warmup": args.warmup,
            "steps": args.steps,
            "cap_gib": cap,
            "seed": SEED,
            "lora_dropout": args.lora_dropout,
            "attn": shape.attn_implementation,
            "tile_mlp": args.tile_mlp,
            "split_attention": args.split_attention,
            "cuda_graphs": args.cuda_graphs,
            "card_gib": args.card_gib,
            "budget_gib": args.budget_gib,
            "embeddings_on_host": args.embeddings_on_host,
        }
        result = bc.run_worker(
            script,
            spec,
            work_dir / "logs",
            timeout_s=min(args.run_timeout_s, remaining()),
            extra_env=EXTRA_ENV,
        )
        result.update({"stack": stack, "batch": 1, "seq": seq, "cap_gib": cap})
        payload["runs"].append(result)
        whole = result.get("whole_peak_gib")
        verdict = result.get("status") == "ok" and (whole is None or whole <= args.budget_gib)
        trials.append(
            {
                "seq": seq,
                "status": result.get("status"),
                "whole_peak_gib": whole,
                "peak_allocated_gib": result.get("peak_allocated_gib"),
                "fits": verdict,
            }
        )
        print(
            f"{tag}: {result.get('status')} whole={bc.fmt(whole, 2)} GiB "
            f"alloc={bc.fmt(result.get('peak_allocated_gib'), 2)} GiB -> {'fits' if verdict else 'does not fit'} "
            f"{args.budget_gib:g} GiB {result.get('error', '')[:200]}",
            flush=True,
        )
        bc.write_json(args.out, payload)
        return verdict

    try:
        longest = longest_fitting(fits, args.bisect_start, args.bisect_min, args.bisect_max, args.bisect_step)
        note = None
    except TimeoutError as exc:
        fitting = [t["seq"] for t in trials if t.get("fits")]
        longest, note = (max(fitting) if fitting else None), f"stopped early: {exc}"
    print(
        f"{stack}: longest sequence within {args.budget_gib:g} GiB (whole process, batch 1): "
        f"{longest if longest else 'none'}{' (' + note + ')' if note else ''}",
        flush=True,
    )
    return {
        "budget_gib": args.budget_gib,
        "cap_gib": cap,
        "longest_seq": longest,
        "trials": trials,
        "note": note,
    }


def compare_first_step_grads(runs: list[dict[str, Any]], reference_stack: str = "plain") -> None:
    """Relative error ||g - g_ref|| / ||g_ref|| of each run's first-step lora_B gradients against the
    reference stack's (same data, seed and LoRA init), the worst tensor and the overall; stored in the run
    as `grad_vs_<reference>`."""

    def has_sample(run: dict[str, Any]) -> bool:  # Path("") would be the working dir, which exists
        return (
            run.get("status") == "ok" and bool(run.get("grad_sample")) and Path(run["grad_sample"]).exists()
        )

    reference = next((r for r in runs if r["stack"] == reference_stack and has_sample(r)), None)
    if reference is None:
        return
    from safetensors.torch import load_file

    ref = load_file(reference["grad_sample"])
    for run in runs:
        if run is reference or not has_sample(run):
            continue
        errors = relative_errors(load_file(run["grad_sample"]), ref)
        run[f"grad_vs_{reference_stack}"] = errors
        if "overall_rel_error" in errors:
            print(
                f"{run['stack']} {run['batch']}x{run['seq']}: first-step LoRA grads vs {reference_stack}: "
                f"overall rel error {errors['overall_rel_error']:.3e}, worst {errors['worst_rel_error']:.3e} "
                f"over {errors['tensors']} tensors",
                flush=True,
            )


def relative_errors(grads: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    common = [name for name in ref if name in grads]
    if not common:
        return {"note": "no common parameter names"}
    errors = {n: float((grads[n] - ref[n]).norm() / ref[n].norm().clamp_min(1e-30)) for n in common}
    diff = sum(float((grads[n] - ref[n]).norm()) ** 2 for n in common) ** 0.5
    norm = sum(float(ref[n].norm()) ** 2 for n in common) ** 0.5
    return {
        "tensors": len(common),
        "overall_rel_error": diff / norm,
        "worst_rel_error": max(errors.values()),
        "worst_tensor": max(errors, key=errors.get),
    }


def compare_graphs_with_eager(runs: list[dict[str, Any]]) -> None:
    """A stack with CUDA graphs against the same stack without: the loss of every step (each depends on
    all earlier updates) and the LoRA gradients of step 3, the first step after the capture."""
    by_stack = {r["stack"]: r for r in runs if r.get("status") == "ok"}
    for graphed, eager in SAME_COMPUTATION.items():
        if graphed not in by_stack or eager not in by_stack:
            continue
        run, ref = by_stack[graphed], by_stack[eager]
        losses = [abs(a - b) / abs(b) for a, b in zip(run["losses"], ref["losses"], strict=False) if b]
        result: dict[str, Any] = {
            "reference": eager,
            "steps": len(losses),
            "max_loss_rel_diff": max(losses) if losses else None,
        }
        late, late_ref = run.get("late_grad_sample"), ref.get("late_grad_sample")
        if late and late_ref and Path(late).exists() and Path(late_ref).exists():
            from safetensors.torch import load_file

            result["step3_grads"] = relative_errors(load_file(late), load_file(late_ref))
        run["graphs_vs_eager"] = result
        grads = result.get("step3_grads", {})
        print(
            f"{graphed} vs {eager} {run['batch']}x{run['seq']}: max loss rel diff over {len(losses)} steps "
            f"{bc.fmt(result['max_loss_rel_diff'], 3, sci=True)}; step-3 LoRA grads overall rel error "
            f"{bc.fmt(grads.get('overall_rel_error'), 3, sci=True)}, worst {bc.fmt(grads.get('worst_rel_error'), 3, sci=True)}",
            flush=True,
        )


def skips_down_proj(stack: str) -> bool:
    """Whether the stack's recompute leaves out the down projection (forumtune's fast path; the FLOP count's
    recompute term, train/compute.py)."""
    if stack in FAST_STACKS:
        return FAST_STACKS[stack][4]
    return stack in FORUMTUNE_STACKS


def median_tokens_per_s(run: dict[str, Any], warmup: int) -> float | None:
    """The median over the timed steps: single slow steps (host jitter on a shared machine, seen up to
    1.7x the typical step) move the mean of 5 steps by several percent. Every row of the benchmark's data
    has the full length, so a step's tokens are batch × seq."""
    timed = [s for s in (run.get("step_s") or [])[warmup:] if s]
    if run.get("status") != "ok" or not timed:
        return None
    return run["batch"] * run["seq"] / statistics.median(timed)


def report(payloads: list[dict[str, Any]], budget: float = 7.6) -> dict[str, Any]:
    """One table over any number of result files (later files win for the same run). "whole process" is
    the run's peak use of the card as the card counts it (bench_common.DeviceUse); "fits BUDGET GiB" says
    whether it stayed within what an 8 GB card leaves to a process, in the capped run where there is one."""
    merged: dict[tuple, dict[str, Any]] = {}
    env = None
    for payload in payloads:
        env = payload.get("env") or env
        shape = bc.Shape(**payload["shape"]) if payload.get("shape") else bc.PRESETS["mistral-7b"]
        for run in payload.get("runs", []):
            if run.get("status") == "skipped":
                continue
            run["median_tokens_per_s"] = median_tokens_per_s(run, payload.get("warmup_steps", 2))
            flops = bc.step_flops(
                shape,
                run["seq"],
                payload.get("lora", {}).get("r", LORA_R),
                skips_down_proj=skips_down_proj(run["stack"]),
            )
            run["utilisation"] = bc.utilisation(run["median_tokens_per_s"], flops, (env or {}).get("gpu"))
            merged[(run["stack"], run["batch"], run["seq"], run.get("cap_gib"))] = run
    runs = list(merged.values())
    if env:
        pk = env.get("packages", {})
        print(
            f"{env.get('gpu')} | {env.get('nvidia_smi', '')} | CUDA {env.get('torch_cuda')} | torch {pk.get('torch')}"
            f" | transformers {pk.get('transformers')} | peft {pk.get('peft')} | bitsandbytes "
            f"{pk.get('bitsandbytes')} | {env.get('date_utc')}"
        )
    shapes = sorted({(r["batch"], r["seq"]) for r in runs}, key=lambda s: (s[0] * s[1], s[0]))
    rows = []
    for batch, seq in shapes:

        def best(stack, batch=batch, seq=seq):
            """Its capped and its uncapped run of this shape (either may be None)."""
            found = [r for r in runs if r["stack"] == stack and (r["batch"], r["seq"]) == (batch, seq)]
            capped = [r for r in found if r.get("cap_gib")]
            uncapped = [r for r in found if not r.get("cap_gib")]
            return capped[0] if capped else None, uncapped[0] if uncapped else None

        base_capped, base_uncapped = best("plain")
        base = base_capped if base_capped and base_capped["status"] == "ok" else base_uncapped
        peer = next((r for r in best("unsloth") if r and r["status"] == "ok"), None)
        for stack in STACKS:
            capped, uncapped = best(stack)
            if not capped and not uncapped:
                continue
            measured = capped if capped and capped["status"] == "ok" else uncapped
            fits = "-" if not capped else ("yes" if capped["status"] == "ok" else capped["status"].upper())
            speed = measured.get("tokens_per_s") if measured and measured["status"] == "ok" else None
            ratio = (
                speed / base["tokens_per_s"]
                if speed and base and base.get("status") == "ok" and base.get("tokens_per_s")
                else None
            )
            median = measured.get("median_tokens_per_s") if measured else None
            versus = (
                median / peer["median_tokens_per_s"]
                if median and peer and peer.get("median_tokens_per_s")
                else None
            )
            peak = measured.get("peak_allocated_gib") if measured and measured["status"] == "ok" else None
            reserved = measured.get("peak_reserved_gib") if measured and measured["status"] == "ok" else None
            status = measured["status"] if measured else "-"
            whole_run = capped or uncapped
            rows.append(
                [
                    f"{batch}x{seq}",
                    stack,
                    fits,
                    bc.fmt(speed),
                    bc.fmt(median),
                    bc.fmt_pct((measured or {}).get("utilisation", {}).get("mfu")),
                    bc.fmt(ratio, 2) + ("x" if ratio else ""),
                    bc.fmt(versus, 2) + ("x" if versus else ""),
                    bc.fmt(peak, 2),
                    bc.fmt(reserved, 2),
                    bc.fmt(measured.get("whole_peak_gib") if peak else None, 2),
                    bc.fmt(((measured or {}).get("planned") or {}).get("whole_gib"), 2),
                    fits_budget(whole_run, budget),
                    bc.fmt(measured.get("first_loss") if measured else None, 4),
                    status if status != "ok" else "",
                ]
            )
    cap = next((r.get("cap_gib") for r in runs if r.get("cap_gib")), None)
    print()
    table = bc.print_table(
        [
            "batch",
            "stack",
            f"fits {cap or '-'} GiB cap",
            "tokens/s (mean)",
            "tokens/s (median)",
            "MFU (median)",
            "vs plain",
            "vs unsloth (median)",
            "peak alloc GiB",
            "peak reserved GiB",
            "whole process GiB",
            "planned whole GiB",
            f"fits {budget:g} GiB",
            "step-1 loss",
            "note",
        ],
        rows,
    )
    return {"runs": runs, "env": env, "table": table}


def fits_budget(run: dict[str, Any] | None, budget_gib: float) -> str:
    """Whether the run's whole-process peak (as the card counts it) stayed within the budget: 'yes', 'no',
    'OOM', or '-' where it was not measured (no GPU, or its first run was uncapped)."""
    if not run:
        return "-"
    if run.get("status") != "ok":
        return run.get("status", "-").upper()
    whole = run.get("whole_peak_gib")
    return "-" if whole is None else ("yes" if whole <= budget_gib else "no")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--report", nargs="+", metavar="JSON", help="print the table of earlier result files")
    parser.add_argument("--preset", default="mistral-7b", choices=sorted(bc.PRESETS))
    parser.add_argument(
        "--model-dir",
        help="where the random-weight model is written (default /tmp/forumtune-bench/PRESET-shape); "
        "another preset's model there is replaced",
    )
    parser.add_argument("--work-dir", default="/tmp/forumtune-bench/throughput")
    parser.add_argument("--stacks", default="plain,forumtune,unsloth")
    parser.add_argument(
        "--shapes", default="2x2048,2x512,1x8192", help="micro-batch x sequence length, comma-separated"
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--steps", type=int, default=8, help="timed steps after the warm-up (their median is reported too)"
    )
    parser.add_argument(
        "--cap-gib",
        type=float,
        help="allocator cap; 0 for none (default 8, or --budget-gib with --bisect-seq)",
    )
    parser.add_argument("--no-uncapped-on-oom", dest="uncapped_on_oom", action="store_false")
    parser.add_argument("--run-timeout-s", type=float, default=420)
    parser.add_argument(
        "--deadline-s", type=float, default=1e9, help="stop starting runs after this many seconds"
    )
    parser.add_argument(
        "--min-run-s", type=float, default=60, help="skip a run with less time than this left"
    )
    parser.add_argument(
        "--profile-out", type=Path, help="also profile one step (--profile-stack); write its JSON here"
    )
    parser.add_argument("--profile-shape", default="2x2048")
    parser.add_argument(
        "--profile-stack",
        default="plain",
        choices=("plain", *FAST_STACKS),
        help="which stack --profile-out profiles",
    )
    parser.add_argument("--trace-out", help="with --profile-out: also write a Chrome trace of the step here")
    parser.add_argument(
        "--memory-trace",
        action="store_true",
        help="record the allocator's events in the third timed step and report the largest "
        "blocks alive at its peak",
    )
    parser.add_argument(
        "--lora-dropout",
        type=float,
        default=0.0,
        help="LoRA dropout of every stack but unsloth (which needs 0 for its fast path)",
    )
    parser.add_argument(
        "--budget-gib",
        type=float,
        default=7.6,
        help="what an 8 GB card leaves to a process: the 'fits' column and --bisect-seq judge the "
        "run's whole use of the card (context, workspaces, managed memory included) against it",
    )
    parser.add_argument(
        "--bisect-seq",
        action="store_true",
        help="instead of --shapes: for each stack, the longest sequence (batch 1) that fits "
        "--budget-gib, each trial its own process, under --cap-gib (default the budget)",
    )
    parser.add_argument(
        "--tile-mlp",
        help="train.tile_mlp of the forumtune stacks: auto, off or tokens per tile (default: the config's, auto)",
    )
    parser.add_argument(
        "--split-attention",
        choices=("auto", "on", "off"),
        help="train.split_attention of the forumtune stacks (default: the config's, auto, which judges by "
        "the card's whole memory, not the cap: pass on to measure an 8 GB card under the cap)",
    )
    parser.add_argument(
        "--cuda-graphs",
        choices=("auto", "true", "false"),
        help="train.cuda_graphs of the forumtune stacks (default: the config's, auto)",
    )
    parser.add_argument(
        "--card-gib",
        type=float,
        help="settle the forumtune stacks' auto settings (train.split_attention, train.cuda_graphs) as on a "
        "card of this many GB with --budget-gib usable (plan.vram_gib, plan.usable_gib), as training on "
        "that card would; default: against the card the run is on",
    )
    parser.add_argument(
        "--embeddings-on-host",
        choices=sorted(bc.EMBEDDINGS_ON_HOST),
        default="auto",
        help="train.embeddings_on_host of the forumtune stacks: the input embedding table in host memory "
        "(auto: on the fast path when the head is not tied to it; default auto)",
    )
    parser.add_argument("--bisect-start", type=int, default=16384)
    parser.add_argument("--bisect-min", type=int, default=1024)
    parser.add_argument("--bisect-max", type=int, default=65536)
    parser.add_argument("--bisect-step", type=int, default=1024, help="the answer's resolution in tokens")
    parser.add_argument("--out", type=Path, help="JSON results file")
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    if args.report:
        combined = report([json.loads(Path(p).read_text()) for p in args.report], args.budget_gib)
        bc.write_json(args.out, combined)
        return
    if args.cap_gib is None:
        args.cap_gib = args.budget_gib if args.bisect_seq else 8.0
    args.model_dir = args.model_dir or f"/tmp/forumtune-bench/{args.preset}-shape"
    payload = orchestrate(args)
    report([payload], args.budget_gib)
    bc.write_json(args.out, payload)  # with each run's median rate and MFU, which the report adds


if __name__ == "__main__":
    main()
