#!/usr/bin/env python3
"""The FP8 kernels (kernels/fp8_matmul.py) against their torch references, byte for byte, on the GPU.

On the CPU the tests run the kernels under Triton's interpreter and find them equal to the references. On
the GPU the compiled kernels run instead, and the references run on CUDA's own torch kernels; this counts,
on Mistral-7B's projection shapes (NF4 with double quantization, random weights), the fp8 bytes and the
fp32 scales that differ between the two:

- the weight, NF4 -> e4m3 (as the forward reads it, and transposed as the backward reads it);
- activation rows -> e4m3 with a scale per row (x), and with the weight's row scales folded in (dy).

`--scalar-division` also counts them against the references as they were first written, dividing by a
Python number (`amax / 448.0`), which torch runs on CUDA as a multiply by the reciprocal: one rounding more
than the kernels' correctly rounded division.

  python benchmarks/fp8_bit_check.py --tokens 4096 --out fp8-bit-check.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common as bc
from dequant import MISTRAL_7B_PROJECTIONS


def differing(kernel: tuple[torch.Tensor, ...], reference: tuple[torch.Tensor, ...]) -> int:
    """Elements that differ, fp8 compared as bytes and scales as fp32 bits."""
    count = 0
    for mine, theirs in zip(kernel, reference, strict=True):
        as_bits = torch.uint8 if mine.element_size() == 1 else torch.int32
        count += int((mine.view(as_bits) != theirs.view(as_bits)).sum())
    return count


def scalar_division_rows(x: torch.Tensor, dtype: torch.dtype, col_scales: torch.Tensor | None):
    """reference_quantize_rows with `amax / fp8 max` divided by a Python number, as first written."""
    from forumtune.kernels.fp8_matmul import FORMATS

    values = x.float() if col_scales is None else x.float() * col_scales
    amax = values.abs().amax(dim=1, keepdim=True)
    scales = torch.where(amax > 0, amax / FORMATS[dtype].max, torch.ones_like(amax))
    return (values * (1.0 / scales)).to(dtype), scales


def check_projection(
    out_features: int, in_features: int, tokens: int, scalar_division: bool
) -> dict[str, Any]:
    import bitsandbytes.functional as F

    from forumtune.kernels import fp8_matmul as f8

    generator = torch.Generator(device="cuda").manual_seed(0)
    weight = torch.randn(out_features, in_features, device="cuda", generator=generator, dtype=torch.bfloat16)
    packed, state = F.quantize_4bit(weight * 0.02, quant_type="nf4", compress_statistics=True)
    x = torch.randn(tokens, in_features, device="cuda", generator=generator, dtype=torch.bfloat16)
    grad = torch.randn(tokens, out_features, device="cuda", generator=generator, dtype=torch.bfloat16) * 1e-3
    w_scales = f8.weight_row_scales(packed, state)
    checks = {
        "weight -> e4m3": (
            (f8.dequantize_nf4_fp8(packed, state),),
            (f8.reference_dequantize_fp8(packed, state),),
        ),
        "weight -> e4m3, transposed": (
            (f8.dequantize_nf4_fp8(packed, state, transposed=True),),
            (f8.reference_dequantize_fp8(packed, state, transposed=True),),
        ),
        "x rows -> e4m3 (bytes, scales)": (f8.quantize_rows(x), f8.reference_quantize_rows(x)),
        "dy rows x W scales -> e4m3 (bytes, scales)": (
            f8.quantize_rows(grad, f8.GRAD_DTYPE, w_scales),
            f8.reference_quantize_rows(grad, f8.GRAD_DTYPE, w_scales),
        ),
    }
    elements = {
        "weight -> e4m3": weight.numel(),
        "weight -> e4m3, transposed": weight.numel(),
        "x rows -> e4m3 (bytes, scales)": x.numel() + tokens,
        "dy rows x W scales -> e4m3 (bytes, scales)": grad.numel() + tokens,
    }
    result = {name: {"elements": elements[name], "differ": differing(*pair)} for name, pair in checks.items()}
    if scalar_division:
        result["x rows -> e4m3 (bytes, scales)"]["differ_scalar_division_reference"] = differing(
            checks["x rows -> e4m3 (bytes, scales)"][0], scalar_division_rows(x, f8.E4M3, None)
        )
        result["dy rows x W scales -> e4m3 (bytes, scales)"]["differ_scalar_division_reference"] = differing(
            checks["dy rows x W scales -> e4m3 (bytes, scales)"][0],
            scalar_division_rows(grad, f8.GRAD_DTYPE, w_scales),
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument(
        "--scalar-division", action="store_true", help="also count against the first references"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit(
            "needs a CUDA GPU: on the CPU the tests compare the kernels under Triton's interpreter"
        )
    results = {
        name: check_projection(*shape, args.tokens, args.scalar_division)
        for name, shape in MISTRAL_7B_PROJECTIONS.items()
    }
    rows = []
    for projection, checks in results.items():
        for part, counts in checks.items():
            old = counts.get("differ_scalar_division_reference")
            rows.append(
                [projection, part, f"{counts['elements']:,}", counts["differ"], "" if old is None else old]
            )
    bc.print_table(["projection", "what", "elements", "differ", "differ (scalar-division reference)"], rows)
    total = sum(c["differ"] for checks in results.values() for c in checks.values())
    print(f"kernels against references on {torch.cuda.get_device_name()}: {total} elements differ")
    bc.write_json(args.out, {"env": bc.environment(), "tokens": args.tokens, "projections": results})


if __name__ == "__main__":
    main()
