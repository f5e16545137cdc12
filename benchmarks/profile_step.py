"""Where one training step of the plain QLoRA stack spends GPU time (torch.profiler).

Called by train_throughput.py --profile-out (it runs in its own worker process). One step after the
warm-up runs under the profiler with a device synchronization between its phases (forward, backward,
clip + optimizer), so every kernel falls inside its phase's time window. Kernels are grouped by name
and by the operator that launched them:

  4-bit dequant      bitsandbytes dequantize kernels (NF4 weights, double-quant absmax), forumtune's
                     NF4 to bf16 or to fp8
  fp8 quantize       with train.base_matmul fp8: activations and output gradients to e4m3, per row
  matmul base        GEMMs on the dequantized base weights
  matmul LoRA        GEMMs with the LoRA rank as one dimension
  attention          SDPA / flash / memory-efficient attention kernels
  logits + CE        the lm_head GEMMs (a vocabulary-sized dimension), softmax / log-softmax / NLL
  elementwise        norms, RoPE, SiLU-and-multiply, residual adds, casts, copies, reductions
  optimizer          bitsandbytes optimizer kernels, and everything in the clip + optimizer phase

Recompute (gradient checkpointing) is told apart by forward hooks on each decoder layer's attention,
MLP and norms that open a "ft::recompute" range when they run during backward. Measured on torch 2.11
this catches the recomputed attention but misses most recomputed projections and elementwise ops,
which then count as backward: read the recompute share as a lower bound, and the forward phase's
layer time as the estimate of what recompute costs.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import bench_common as bc

CATEGORIES = [
    "4-bit dequant",
    "fp8 quantize",  # train.base_matmul fp8: activations and output gradients to e4m3 (kernels.fp8_matmul)
    "matmul base",
    "matmul LoRA",
    "attention",
    "logits + CE",
    "elementwise",
    "optimizer",
    "other",
]
PHASES = ["forward", "backward", "recompute", "optimizer", "outside"]

_GEMM = re.compile(
    r"gemm|cutlass|xmma|nvjet|cublas|wgmma|splitk|gemv|sm90_|sm80_|ampere_|hopper", re.IGNORECASE
)
_ATTN = re.compile(r"flash|fmha|attention|sdpa|mha|_attn", re.IGNORECASE)
_CE = re.compile(r"softmax|nll_loss|cross_entropy|logsumexp", re.IGNORECASE)
_DEQUANT = re.compile(r"dequant", re.IGNORECASE)
_FP8_QUANT = re.compile(r"quantize_rows", re.IGNORECASE)
_OPT = re.compile(r"optimizer|adam", re.IGNORECASE)


def _shapes(op_shapes: Any) -> list[tuple[int, ...]]:
    found = []
    for shape in op_shapes or []:
        if isinstance(shape, (list, tuple)) and shape and all(isinstance(d, int) for d in shape):
            found.append(tuple(shape))
    return found


def attention_shaped(shapes: list[tuple[int, ...]], head_dim: int, gemm: bool) -> bool:
    """The math SDPA path: S×S score/probability tensors (4-D, last two dims equal), and for GEMMs,
    operands with head_dim in their last two dims (QK^T, PV and their gradients)."""
    for shape in shapes:
        if len(shape) == 4 and shape[-1] == shape[-2] and shape[-1] > head_dim:
            return True
        if gemm and len(shape) >= 3 and head_dim in shape[-2:]:
            return True
    return False


def classify(
    kernel: str, op_names: list[str], op_shapes: Any, phase: str, vocab: int, rank: int, head_dim: int = 128
) -> str:
    """op_names: the launching operator's name, then its parents' names outward."""
    op_name = op_names[0] if op_names else ""
    shapes = _shapes(op_shapes)
    dims = {d for shape in shapes for d in shape}
    is_gemm = bool(_GEMM.search(kernel)) or op_name in (
        "aten::mm",
        "aten::addmm",
        "aten::bmm",
        "aten::matmul",
        "aten::_scaled_mm",
    )
    fused_attention = any(
        "flash_attention" in n or "efficient_attention" in n or "cudnn_attention" in n for n in op_names
    )
    if phase == "optimizer" or _OPT.search(kernel):
        return "optimizer"
    if _DEQUANT.search(kernel) or "dequantize" in op_name:
        return "4-bit dequant"
    if _FP8_QUANT.search(kernel):
        return "fp8 quantize"
    if fused_attention or _ATTN.search(kernel) or attention_shaped(shapes, head_dim, is_gemm):
        return "attention"
    if vocab in dims or _CE.search(kernel) or "nll_loss" in op_name:
        return "logits + CE"
    if is_gemm:
        return "matmul LoRA" if rank in dims else "matmul base"
    if kernel.lower().startswith(("memcpy", "memset")):
        return "other"
    return "elementwise"


def gemm_precision(kernel: str) -> str:
    k = kernel.lower()
    if "e4m3" in k or "e5m2" in k or "f8f8" in k or "fp8" in k:
        return "fp8"
    if "f32f32" in k or "sgemm" in k or "ffma" in k or "tf32" in k:
        return "fp32"
    return "16-bit"


class RecomputeMarker:
    """Forward pre/post hooks that open a profiler range around each decoder sub-module call: named
    ft::recompute while backward runs (gradient checkpointing re-running the layer), else ft::layer."""

    def __init__(self, model):
        self.in_backward = False
        self.handles = []
        self.open: dict[int, list] = defaultdict(list)
        layers = None
        for module in model.modules():
            if type(module).__name__.endswith("DecoderLayer"):
                layers = layers or []
                layers.append(module)
        for layer in layers or []:
            for child in (
                getattr(layer, n, None)
                for n in ("input_layernorm", "self_attn", "post_attention_layernorm", "mlp")
            ):
                if child is None:
                    continue
                self.handles.append(child.register_forward_pre_hook(self._enter))
                self.handles.append(child.register_forward_hook(self._exit))
        self.layers = len(layers or [])

    def _enter(self, module, args):
        import torch

        marker = torch.autograd.profiler.record_function("ft::recompute" if self.in_backward else "ft::layer")
        marker.__enter__()
        self.open[id(module)].append(marker)

    def _exit(self, module, args, output):
        stack = self.open.get(id(module))
        if stack:
            stack.pop().__exit__(None, None, None)

    def remove(self):
        for handle in self.handles:
            handle.remove()


def profiled_step(
    model, optimizer, batch, marker: RecomputeMarker, trace_path: str | None, autocast: bool = False
):
    import contextlib

    import torch
    from torch.autograd.profiler import record_function
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    params = [p for p in model.parameters() if p.requires_grad]
    windows: dict[str, tuple[float, float]] = {}
    bc.synchronize()
    with profile(activities=activities, record_shapes=True) as prof:
        wall_start = time.perf_counter()
        context = (
            torch.autocast(device_type=batch["input_ids"].device.type, dtype=torch.bfloat16)
            if autocast
            else contextlib.nullcontext()
        )
        with record_function("ft::phase_forward"), context:
            loss = model(**batch).loss
            bc.synchronize()
        marker.in_backward = True
        with record_function("ft::phase_backward"):
            loss.backward()
            bc.synchronize()
        marker.in_backward = False
        with record_function("ft::phase_optimizer"):
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            bc.synchronize()
        wall_s = time.perf_counter() - wall_start
    if trace_path:
        prof.export_chrome_trace(trace_path)
    from torch.autograd import DeviceType

    for event in prof.events():  # the CPU-side ranges (kineto also records GPU-side copies of them)
        if event.name.startswith("ft::phase_") and event.device_type == DeviceType.CPU:
            windows[event.name[len("ft::phase_") :]] = (event.time_range.start, event.time_range.end)
    return prof, windows, wall_s, float(loss.detach())


def analyse(
    prof, windows: dict[str, tuple[float, float]], vocab: int, rank: int, head_dim: int = 128
) -> dict[str, Any]:
    from torch.autograd import DeviceType

    events = list(prof.events())

    def in_recompute(op) -> bool:
        node = op
        while node is not None:
            if node.name == "ft::recompute":
                return True
            node = node.cpu_parent
        return False

    def phase_at(start_us: float) -> str:
        for name, (lo, hi) in windows.items():
            if lo <= start_us <= hi:
                return name
        return "outside"

    # Each operator carries the device kernels it launched (name, duration); the operator's CPU start
    # time places it in a phase, since the phases are separated by device synchronizations.
    # Kernels hang on the frontend event whose correlation id they carry; where several events share an
    # id (seen with torch 2.11: kernel time summed to more than the device events' time), each got the
    # same kernels, so keep only the innermost (shortest) of them.
    launcher: dict[int, Any] = {}
    for e in events:
        if e.device_type == DeviceType.CPU and getattr(e, "kernels", None):
            known = launcher.get(e.id)
            if known is None or (e.time_range.end - e.time_range.start) < (
                known.time_range.end - known.time_range.start
            ):
                launcher[e.id] = e
    kernels = []
    for e in launcher.values():
        for kernel in e.kernels:
            kernels.append((kernel.name, e.time_range.start, kernel.duration, e))
    device_total = sum(
        e.time_range.end - e.time_range.start
        for e in events
        if e.device_type == DeviceType.CUDA
        and not e.name.startswith("ft::")
        and not getattr(e, "is_user_annotation", False)
    )
    device_by_phase: dict[str, float] = defaultdict(float)
    for e in events:
        if (
            e.device_type == DeviceType.CUDA
            and not e.name.startswith("ft::")
            and not getattr(e, "is_user_annotation", False)
        ):
            device_by_phase[phase_at(e.time_range.start)] += e.time_range.end - e.time_range.start
    if not kernels and device_total:  # no operator links: device events alone (by name and start time)
        for e in events:
            if (
                e.device_type == DeviceType.CUDA
                and not e.name.startswith("ft::")
                and not getattr(e, "is_user_annotation", False)
            ):
                kernels.append((e.name, e.time_range.start, e.time_range.end - e.time_range.start, None))
    if not kernels and not device_total:  # a CPU run (logic check): leaf operators stand in for kernels
        for e in events:
            if e.device_type == DeviceType.CPU and not e.cpu_children and e.name.startswith("aten::"):
                kernels.append((e.name, e.time_range.start, e.time_range.end - e.time_range.start, e))
    by_cat_phase: dict[str, dict[str, float]] = {c: defaultdict(float) for c in CATEGORIES}
    by_kernel: dict[str, list] = defaultdict(lambda: [0.0, 0, ""])
    gemm_by_precision: dict[str, float] = defaultdict(float)
    for name, start, duration, op in kernels:
        phase = phase_at(start)
        if phase == "backward" and op is not None and in_recompute(op):
            phase = "recompute"
        names = []
        node = op
        while node is not None and len(names) < 40:
            names.append(node.name)
            node = node.cpu_parent
        category = classify(
            name, names, op.input_shapes if op is not None else None, phase, vocab, rank, head_dim
        )
        if category.startswith("matmul") or (category in ("logits + CE", "attention") and _GEMM.search(name)):
            gemm_by_precision[gemm_precision(name)] += duration
        by_cat_phase[category][phase] += duration
        entry = by_kernel[name]
        entry[0] += duration
        entry[1] += 1
        entry[2] = category
    total = sum(sum(p.values()) for p in by_cat_phase.values()) or 1.0
    categories = {
        c: {
            "us": round(sum(p.values()), 1),
            "pct": round(100 * sum(p.values()) / total, 2),
            "by_phase_pct": {ph: round(100 * v / total, 2) for ph, v in p.items() if v},
        }
        for c, p in by_cat_phase.items()
    }
    phases = {ph: round(100 * sum(p.get(ph, 0.0) for p in by_cat_phase.values()) / total, 2) for ph in PHASES}
    top = sorted(by_kernel.items(), key=lambda kv: -kv[1][0])[:25]
    return {
        "kernel_time_us": round(total, 1),
        "kernels": len(kernels),
        "categories": categories,
        "device_events_time_us": round(device_total, 1),
        "device_events_us_by_phase": {k: round(v, 1) for k, v in device_by_phase.items()},
        "gemm_us_by_precision": {k: round(v, 1) for k, v in gemm_by_precision.items()},
        "attributed_pct_of_device_events": round(100 * total / device_total, 1) if device_total else None,
        "phases_pct": phases,
        "top_kernels": [
            {
                "name": n[:160],
                "us": round(v[0], 1),
                "calls": v[1],
                "pct": round(100 * v[0] / total, 2),
                "category": v[2],
            }
            for n, v in top
        ],
        "phase_windows_us": {k: round(hi - lo, 1) for k, (lo, hi) in windows.items()},
    }


def run(spec: dict[str, Any], tt) -> dict[str, Any]:
    """tt: the train_throughput module (its loader and loop)."""
    import torch

    records = bc.read_records(Path(spec["dataset_dir"]))
    order = bc.batch_order(len(records), spec["batch"], spec.get("seed", 42), spec["warmup"] + 1)
    stack = spec.get("profile_stack", "plain")
    fast = stack in tt.FAST_STACKS
    if fast:
        model, optimizer, _ = tt.load_fast({**spec, "stack": stack})
    else:
        model, optimizer = tt.load_plain(spec)
    warm = tt.train_steps(model, optimizer, records, order[:-1], autocast=fast)
    marker = RecomputeMarker(model)
    batch = tt._collate(records, order[-1], tt._device())
    prof, windows, wall_s, loss = profiled_step(
        model, optimizer, batch, marker, spec.get("trace_path"), autocast=fast
    )
    marker.remove()
    analysis = analyse(prof, windows, spec["vocab"], spec["lora_r"], spec.get("head_dim", 128))
    tokens = spec["batch"] * spec["seq"]
    flops = bc.step_flops(
        bc.PRESETS[spec.get("preset", "mistral-7b")],
        spec["seq"],
        spec["lora_r"],
        skips_down_proj=tt.skips_down_proj(stack),
    )
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    kernel_s = analysis["kernel_time_us"] / 1e6
    return {
        "profiled_stack": stack,
        "batch": spec["batch"],
        "seq": spec["seq"],
        "warmup_step_s": [round(s, 3) for s in warm["step_s"]],
        "profiled_step_wall_s": round(wall_s, 3),
        "profiled_tokens_per_s": tokens / wall_s,
        "decoder_layers_hooked": marker.layers,
        "loss": loss,
        "gpu_busy_pct_of_wall": round(100 * analysis["kernel_time_us"] / 1e6 / wall_s, 1),
        # MFU over the profiled step's kernel time: what the GPU's own work reaches, host gaps left out
        "utilisation_kernel_time": bc.utilisation(tokens / kernel_s if kernel_s else None, flops, device),
        **analysis,
    }


def print_profile(profile: dict[str, Any]) -> None:
    print(
        f"\nprofile of one {profile.get('profiled_stack', 'plain')}-stack step, {profile['batch']}x{profile['seq']}: wall "
        f"{profile['profiled_step_wall_s']} s (with syncs between phases), kernel time "
        f"{profile['kernel_time_us'] / 1e6:.3f} s = {profile['gpu_busy_pct_of_wall']}% of wall, "
        f"{profile['kernels']} kernels; MFU over the kernel time "
        f"{bc.fmt_pct(profile.get('utilisation_kernel_time', {}).get('mfu'))}"
    )
    rows = []
    for name, c in profile["categories"].items():
        if not c["us"]:
            continue
        ph = c["by_phase_pct"]
        rows.append(
            [
                name,
                f"{c['pct']:.1f}%",
                f"{ph.get('forward', 0):.1f}",
                f"{ph.get('backward', 0):.1f}",
                f"{ph.get('recompute', 0):.1f}",
                f"{ph.get('optimizer', 0):.1f}",
            ]
        )
    bc.print_table(["category", "share of kernel time", "fwd", "bwd", "recompute", "optim"], rows)
    print(
        f"device events: {profile.get('device_events_time_us', 0) / 1e6:.3f} s (attributed kernels "
        f"{profile.get('attributed_pct_of_device_events')}% of that); by phase (ms): "
        + ", ".join(f"{k} {v / 1000:.0f}" for k, v in profile.get("device_events_us_by_phase", {}).items())
    )
    print(
        "GEMM time by precision (ms): "
        + ", ".join(f"{k} {v / 1000:.0f}" for k, v in profile.get("gemm_us_by_precision", {}).items())
    )
    print("phases (% of kernel time): " + ", ".join(f"{k} {v}" for k, v in profile["phases_pct"].items()))
    print("\ntop kernels:")
    bc.print_table(
        ["kernel", "ms", "calls", "%", "category"],
        [
            [k["name"][:90], f"{k['us'] / 1000:.1f}", k["calls"], f"{k['pct']:.1f}", k["category"]]
            for k in profile["top_kernels"][:15]
        ],
    )
