#!/usr/bin/env python3
"""The base's products per projection, bf16 against FP8 (train.base_matmul), on Mistral-7B's projection
shapes (NF4, double quantization) at --tokens tokens (2 × 2048 by default), on the GPU.

For each projection: the forward product x Wᵀ and the input gradient dy W as `QLoRAMatmul` runs them,
bf16 (Triton NF4 → bf16 dequantize, then the bf16 GEMM) and fp8 (kernels.fp8_matmul: the rows of x or
dy to e4m3, NF4 → e4m3 dequantize, `torch._scaled_mm`), and the parts of each alone. Times are GPU
microseconds per call from CUDA-graph replays (benchmarks/dequant.py's timing), so launch overhead is left
out as the training step's graphs leave it out. Also the fp8 results' relative error against bf16's.

  python benchmarks/fp8_projections.py --out fp8-projections.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common as bc
from dequant import MISTRAL_7B_PROJECTIONS, time_per_call


def projection_parts(weight, state, x: torch.Tensor, grad: torch.Tensor) -> dict[str, Any]:
    """Name → a call that runs one part once, as the fused layer runs it."""
    from forumtune.kernels import fp8_matmul
    from forumtune.kernels.lora_linear import dequantize_weight

    scales = fp8_matmul.weight_row_scales(weight, state)  # once per weight in training
    x8, x_scales = fp8_matmul.quantize_rows(x)
    w8 = fp8_matmul.dequantize_nf4_fp8(weight, state)
    dense = dequantize_weight(weight, state, torch.bfloat16)
    return {
        "bf16 forward (dequantize + GEMM)": lambda: x @ dequantize_weight(weight, state, torch.bfloat16).t(),
        "fp8 forward (quantize x + dequantize + _scaled_mm)": lambda: fp8_matmul.base_product(
            x, weight, state
        ),
        "bf16 input grad": lambda: grad @ dequantize_weight(weight, state, torch.bfloat16),
        "fp8 input grad": lambda: fp8_matmul.base_input_grad(grad, weight, state),
        "  NF4 -> bf16 dequantize": lambda: dequantize_weight(weight, state, torch.bfloat16),
        "  NF4 -> e4m3 dequantize": lambda: fp8_matmul.dequantize_nf4_fp8(weight, state),
        "  NF4 -> e4m3 dequantize, transposed": lambda: fp8_matmul.dequantize_nf4_fp8(
            weight, state, transposed=True
        ),
        "  x rows -> e4m3": lambda: fp8_matmul.quantize_rows(x),
        "  dy rows x W scales -> e4m3": lambda: fp8_matmul.quantize_rows(grad, fp8_matmul.GRAD_DTYPE, scales),
        "  bf16 GEMM alone": lambda: x @ dense.t(),
        "  _scaled_mm alone": lambda: torch._scaled_mm(
            x8, w8.t(), scale_a=x_scales, scale_b=scales.view(1, -1), out_dtype=torch.bfloat16
        ),
    }


def measure_projection(out_features: int, in_features: int, tokens: int, args) -> dict[str, Any]:
    import bitsandbytes.functional as F

    from forumtune.kernels import fp8_matmul
    from forumtune.kernels.lora_linear import dequantize_weight

    generator = torch.Generator(device="cuda").manual_seed(0)
    weight = torch.randn(out_features, in_features, device="cuda", generator=generator, dtype=torch.bfloat16)
    packed, state = F.quantize_4bit(weight * 0.02, quant_type="nf4", compress_statistics=True)
    x = torch.randn(tokens, in_features, device="cuda", generator=generator, dtype=torch.bfloat16)
    grad = torch.randn(tokens, out_features, device="cuda", generator=generator, dtype=torch.bfloat16) * 1e-3
    parts = projection_parts(packed, state, x, grad)
    times = {name: time_per_call(call, args.calls, args.repeats) for name, call in parts.items()}
    dense = dequantize_weight(packed, state, torch.bfloat16)
    errors = {
        "forward": rel_error(fp8_matmul.base_product(x, packed, state), x @ dense.t()),
        "input_grad": rel_error(fp8_matmul.base_input_grad(grad, packed, state), grad @ dense),
    }
    return {"shape": [out_features, in_features], "tokens": tokens, "us": times, "fp8_rel_error": errors}


def rel_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value.float() - reference.float()).norm() / reference.float().norm())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--calls", type=int, default=20, help="calls per captured graph")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9):
        raise SystemExit("needs a CUDA GPU with FP8 tensor cores (compute capability 8.9 or later)")
    results = {
        name: measure_projection(*shape, args.tokens, args) for name, shape in MISTRAL_7B_PROJECTIONS.items()
    }
    for name, result in results.items():
        us = result["us"]
        print(
            f"\n{name} {result['shape'][0]}x{result['shape'][1]}, {args.tokens} tokens: fp8 error vs bf16 "
            f"forward {result['fp8_rel_error']['forward']:.2e}, input grad {result['fp8_rel_error']['input_grad']:.2e}"
        )
        bc.print_table(["part", "us per call"], [[part, bc.fmt(t, 1)] for part, t in us.items()])
        for pair in (("bf16 forward", "fp8 forward"), ("bf16 input grad", "fp8 input grad")):
            bf16, fp8 = (next(t for part, t in us.items() if part.startswith(p)) for p in pair)
            print(f"{pair[1]}: {bf16 / fp8:.2f}x faster than {pair[0]}")
    bc.write_json(args.out, {"env": bc.environment(), "tokens": args.tokens, "projections": results})


if __name__ == "__main__":
    main()
