"""Causal attention's forward + backward for all heads at once (PyTorch's fused SDPA kernel) against a
group of heads at a time (forumtune.kernels.grouped_attention, `train.split_attention`): the largest
output and gradient differences, time, and the memory the backward allocates beyond its inputs and
saved tensors.

    python benchmarks/attention_groups.py --seqs 4096,16384,32768 --out attention-groups.json

Heads as in the Mistral-7B shape (32 query heads, 8 key/value heads, head dim 128), bf16, batch 1. On a
machine without CUDA it runs on the CPU (small --seqs; fp32; times are the CPU's).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import bench_common as bc
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from forumtune.kernels.grouped_attention import grouped_causal_attention


def fused(query, key, value, scale):
    out = F.scaled_dot_product_attention(query, key, value, is_causal=True, enable_gqa=True, scale=scale)
    return out.transpose(1, 2)


def fused_flash(query, key, value, scale):
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        return fused(query, key, value, scale)


def grouped(backend):
    return lambda query, key, value, scale: grouped_causal_attention(query, key, value, scale, backend)


VARIANTS = {  # name: (function, CUDA only)
    "fused": (fused, False),
    "fused-flash": (fused_flash, True),
    "grouped": (grouped(None), False),
    "grouped-flash": (grouped(SDPBackend.FLASH_ATTENTION), True),
    "grouped-cudnn": (grouped(SDPBackend.CUDNN_ATTENTION), True),
}


def measure(run, inputs, grad_out, repeats: int) -> dict[str, Any]:
    """Median seconds of forward + backward, and the backward's peak allocation above what was alive."""
    times, peak = [], None
    for _ in range(repeats):
        bc.synchronize()
        start = time.perf_counter()
        out = run(*inputs)
        if inputs[0].is_cuda:
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        grads = torch.autograd.grad(out, inputs[:3], grad_out)
        bc.synchronize()
        times.append(time.perf_counter() - start)
        if inputs[0].is_cuda:
            peak = (torch.cuda.max_memory_allocated() - base) / bc.MIB
    times.sort()
    return {
        "out": out.detach(),
        "grads": [g.detach() for g in grads],
        "s": times[len(times) // 2],
        "peak": peak,
    }


def compare(seq: int, device: str, repeats: int) -> dict[str, Any]:
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    generator = torch.Generator(device=device).manual_seed(0)

    def tensor(heads):
        return torch.randn(
            1, heads, seq, 128, device=device, dtype=dtype, generator=generator
        ).requires_grad_()

    inputs = (tensor(32), tensor(8), tensor(8), 128**-0.5)
    grad_out = torch.randn(1, seq, 32, 128, device=device, dtype=dtype, generator=generator)
    choice = torch.ops.aten._fused_sdp_choice(*inputs[:3], None, 0.0, True, scale=inputs[3], enable_gqa=True)
    runs = {}
    for name, (run, cuda_only) in VARIANTS.items():
        if cuda_only and device != "cuda":
            continue
        try:
            runs[name] = measure(run, inputs, grad_out, repeats)
        except RuntimeError as exc:  # a kernel that does not take these shapes here
            runs[name] = {"error": str(exc)[:300]}
    whole = runs["fused"]

    def max_diff(a, b):
        return float((a.float() - b.float()).abs().max())

    rows = []
    for name, result in runs.items():
        row = {"seq": seq, "variant": name, "device": device, "dtype": str(dtype), "fused_choice": choice}
        if "error" in result:
            rows.append({**row, "error": result["error"]})
            continue
        diffs = [max_diff(g, w) for g, w in zip(result["grads"], whole["grads"], strict=True)]
        rows.append(
            {
                **row,
                "out_max_abs_diff": max_diff(result["out"], whole["out"]),
                "grad_max_abs_diff": diffs,
                "s": result["s"],
                "vs_fused": whole["s"] / result["s"],
                "backward_peak_mib": result["peak"],
                "hidden_state_mib": seq * 4096 * inputs[0].element_size() / bc.MIB,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seqs", default="4096,16384,32768")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = [row for seq in args.seqs.split(",") for row in compare(int(seq), device, args.repeats)]
    table = [
        [
            r["seq"],
            r["variant"],
            r.get("error", "")[:60] or bc.fmt(r["s"] * 1000, 2),
            f"{r['vs_fused']:.3f}" if "vs_fused" in r else "-",
            bc.fmt(r.get("backward_peak_mib")),
            bc.fmt(r.get("hidden_state_mib")),
            f"{r['out_max_abs_diff']:.1e}" if "out_max_abs_diff" in r else "-",
            " ".join(f"{d:.1e}" for d in r.get("grad_max_abs_diff", [])),
        ]
        for r in rows
    ]
    headers = ["seq", "variant", "fwd+bwd ms", "speed vs fused", "bwd peak MiB", "H MiB", "out diff"]
    bc.print_table([*headers, "dq dk dv diff"], table)
    print(f"SDPA's choice for all heads: {SDPBackend(rows[0]['fused_choice']).name}")
    bc.write_json(args.out, {"benchmark": "attention_groups", "runs": rows, "env": bc.environment()})


if __name__ == "__main__":
    main()
