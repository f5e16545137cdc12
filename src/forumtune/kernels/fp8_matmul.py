"""The frozen base's matmuls in FP8 (train.base_matmul: fp8), for GPUs with FP8 tensor cores (Ada, Hopper).

The bf16 path dequantizes an NF4 weight to bf16 and multiplies; here the weight goes straight from NF4 to
float8_e4m3fn and the matmul is `torch._scaled_mm` (twice the bf16 tensor-core rate, half the bytes):

    y  = x W^T:   x  -> e4m3, one scale per row (token);  W -> e4m3, one scale per output row
    dx = dy W:    dy -> e4m3 with W's row scales folded in first (see below);  W -> e4m3, transposed

Scales: a row's scale is its largest magnitude / 448 (e4m3's largest value), so nothing saturates. W's
row scale needs no pass over W: an NF4 code lies in [-1, 1] and the block's largest weight is coded
exactly ±1, so a row's largest magnitude is the largest absmax of its blocks; it is computed once per
weight (the base is frozen) and kept on its QuantState.

The backward's reduction runs over W's rows, where W's scales lie, and `_scaled_mm` scales only along
the output's rows and columns. Rather than a second quantization of W with scales per input column (a
different rounding of the same weight), W's row scales multiply dy's columns before dy is quantized, in
the same kernel pass: dx = (dy · diag(s_W)) W_q, with W_q exactly the forward's fp8 values.

dy is quantized to e4m3 as well (not e5m2): with a scale per row the range e5m2 would buy is not needed,
and e4m3's extra mantissa bit matters: on the test layer the input gradient's error is 3.4% with e4m3 and
5.4% with e5m2 (tests/kernels/test_fp8_matmul.py).

Values are scaled by multiplying with the scale's reciprocal (one division per row, not per element), then
rounded in fp32 bits to nearest even onto the fp8 grid (subnormals included) before the cast, so the cast
itself is exact wherever it runs: the GPU's conversion, or Triton's interpreter's, which does not round
ties to even. The kernels thereby equal the torch references (`reference_*`: the same arithmetic, torch's
own cast) bit for bit; those run where Triton cannot (a CPU).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch

from forumtune.kernels import nf4_dequant
from forumtune.kernels.nf4_dequant import block_values

try:
    import triton
    import triton.language as tl
except ImportError:  # without Triton, the torch references run (annotations stay unevaluated strings)
    triton = tl = None

E4M3 = torch.float8_e4m3fn
GRAD_DTYPE = E4M3  # dy's format (see the module docstring)
TILE_ROWS = 64  # weight rows per dequantize program (each program does one quantization block of them)
QUANT_BLOCK = 1024  # elements per step along an activation row
FAST_ACCUM = False  # cuBLASLt/CUTLASS fast accumulation skips periodic fp32 promotion: kept off, for accuracy
SCALE_CACHE = "_forumtune_fp8_row_scales"  # where a QuantState keeps its weight's row scales


@dataclass(frozen=True)
class Fp8Format:
    """What rounding onto one fp8 format's grid needs, in fp32 terms."""

    mantissa_drop: int  # fp32's 23 mantissa bits minus the format's
    min_normal_bits: int  # fp32 bit pattern of the smallest normal magnitude
    subnormal_magic: float  # 1.5 × 2^23 × the subnormal spacing: adding and removing it rounds to that grid
    max: float


FORMATS = {
    torch.float8_e4m3fn: Fp8Format(20, (127 - 6) << 23, 1.5 * 2.0**14, 448.0),
    torch.float8_e5m2: Fp8Format(21, (127 - 14) << 23, 1.5 * 2.0**7, 57344.0),
}


def round_to_fp8_grid(value, MANTISSA_DROP: tl.constexpr, MIN_NORMAL_BITS: tl.constexpr, MAGIC: tl.constexpr):
    """fp32 values (within the format's range) rounded to nearest even onto the fp8 grid, as fp32."""
    bits = value.to(tl.int32, bitcast=True)
    magnitude = bits & 0x7FFFFFFF
    half = (1 << (MANTISSA_DROP - 1)) - 1
    kept = (magnitude + half + ((magnitude >> MANTISSA_DROP) & 1)) & ~((1 << MANTISSA_DROP) - 1)
    subnormal = ((tl.abs(value) + MAGIC) - MAGIC).to(tl.int32, bitcast=True)
    magnitude = tl.where(magnitude < MIN_NORMAL_BITS, subnormal, kept)
    return ((bits & -2147483648) | magnitude).to(tl.float32, bitcast=True)


def larger(a, b):
    return tl.maximum(a, b)


def dequantize_nf4_fp8_body(
    packed,
    block_codes,
    block_scales,
    scale_code,
    offset_ptr,
    nf4_code,
    row_scales,
    out,
    n_rows,
    n_cols,
    NESTED: tl.constexpr,
    BLOCK: tl.constexpr,
    NESTED_BLOCK: tl.constexpr,
    TILE_ROWS: tl.constexpr,
    TRANSPOSED: tl.constexpr,
    MANTISSA_DROP: tl.constexpr,
    MIN_NORMAL_BITS: tl.constexpr,
    MAGIC: tl.constexpr,
):
    """One quantization block (BLOCK weights along a row) of TILE_ROWS rows: NF4 code × block scale in fp32
    (as bitsandbytes computes it), × the reciprocal of the row's scale, rounded to e4m3; stored (rows, cols)
    or transposed."""
    rows = tl.program_id(0) * TILE_ROWS + tl.arange(0, TILE_ROWS)
    in_range = rows < n_rows
    blocks = rows * (n_cols // BLOCK) + tl.program_id(1)
    values = block_values(
        packed,
        block_codes,
        block_scales,
        scale_code,
        offset_ptr,
        nf4_code,
        blocks,
        in_range,
        NESTED,
        BLOCK // 2,
        NESTED_BLOCK,
        TILE_ROWS,
    )
    inverse = tl.div_rn(1.0, tl.load(row_scales + rows, mask=in_range, other=1.0))  # a multiply per weight
    values = round_to_grid(values * inverse[:, None], MANTISSA_DROP, MIN_NORMAL_BITS, MAGIC)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    if TRANSPOSED:  # (cols, rows): the backward's operand
        index = cols[:, None] * n_rows + rows[None, :]
        tl.store(out + index, tl.trans(values).to(out.dtype.element_ty), mask=in_range[None, :])
    else:
        index = rows[:, None] * n_cols + cols[None, :]
        tl.store(out + index, values.to(out.dtype.element_ty), mask=in_range[:, None])


def quantize_rows_body(
    x,
    col_scales,
    out,
    scales,
    n_cols,
    HAS_COL_SCALES: tl.constexpr,
    FP8_MAX: tl.constexpr,
    BLOCK: tl.constexpr,
    MANTISSA_DROP: tl.constexpr,
    MIN_NORMAL_BITS: tl.constexpr,
    MAGIC: tl.constexpr,
):
    """One row: its largest magnitude (after the optional column scales), then the row × the reciprocal of
    amax/FP8_MAX rounded onto the fp8 grid. Two passes over the row; the second mostly hits the cache."""
    row = tl.program_id(0).to(tl.int64) * n_cols
    amax = tl.full((BLOCK,), 0.0, tl.float32)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        values = tl.load(x + row + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
        if HAS_COL_SCALES:
            values = values * tl.load(col_scales + cols, mask=cols < n_cols, other=0.0)
        amax = tl.maximum(amax, tl.abs(values))
    largest = tl.reduce(amax, 0, larger_of)
    scale = tl.where(largest > 0, tl.div_rn(largest, FP8_MAX), 1.0)
    tl.store(scales + tl.program_id(0), scale)
    inverse = tl.div_rn(1.0, scale)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        values = tl.load(x + row + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
        if HAS_COL_SCALES:
            values = values * tl.load(col_scales + cols, mask=cols < n_cols, other=0.0)
        values = round_to_grid(values * inverse, MANTISSA_DROP, MIN_NORMAL_BITS, MAGIC)
        tl.store(out + row + cols, values.to(out.dtype.element_ty), mask=cols < n_cols)


available = triton is not None
# the kernels call the rounding through this name: jitted here, Triton's interpreter in the CPU tests
round_to_grid = triton.jit(round_to_fp8_grid) if available else None
larger_of = (
    triton.jit(larger) if available else None
)  # tl.max is itself jitted, which the interpreter cannot call


@functools.cache
def compiled_kernels() -> tuple[Any, Any]:
    return triton.jit(dequantize_nf4_fp8_body), triton.jit(quantize_rows_body)


def fits(state: Any) -> bool:
    """Whether `_scaled_mm` takes the weight: both dimensions multiples of 16 (its rule for fp8 operands)."""
    out_features, in_features = state.shape
    return out_features % 16 == 0 and in_features % 16 == 0


def triton_dequantizes(weight: torch.Tensor, state: Any) -> bool:
    """Whether the Triton kernel handles the weight: NF4 on CUDA, power-of-two blocks within rows, and
    (when nested) 8-bit block scales. Other weights take the torch reference."""
    blocksize, in_features = state.blocksize, state.shape[1]
    return (
        available
        and weight.is_cuda
        and state.quant_type == "nf4"
        and blocksize >= 2
        and blocksize & (blocksize - 1) == 0
        and in_features % blocksize == 0
        and (not state.nested or state.absmax.dtype == torch.uint8)
    )


def weight_row_scales(weight: torch.Tensor, state: Any) -> torch.Tensor:
    """Each output row's scale (largest block absmax / 448), fp32, computed once and kept on the state."""
    cached = getattr(state, SCALE_CACHE, None)
    if cached is not None and cached.device == weight.device:
        return cached
    from forumtune.kernels.lora_linear import block_scales

    out_features = state.shape[0]
    # abs: double quantization stores a block's absmax less the mean, so a tiny one can come back negative
    absmax = block_scales(state).float().abs()
    if absmax.numel() % out_features:  # blocks straddle rows: each row takes its blocks' largest
        absmax = absmax.repeat_interleave(state.blocksize)[: torch.Size(state.shape).numel()]
    scales = true_divide(absmax.reshape(out_features, -1).amax(dim=1), FORMATS[E4M3].max)
    scales = torch.where(scales > 0, scales, torch.ones_like(scales)).to(weight.device).contiguous()
    setattr(state, SCALE_CACHE, scales)
    return scales


def rounding_constants(dtype: torch.dtype) -> dict[str, Any]:
    found = FORMATS[dtype]
    return {
        "MANTISSA_DROP": found.mantissa_drop,
        "MIN_NORMAL_BITS": found.min_normal_bits,
        "MAGIC": found.subnormal_magic,
    }


def dequantize_nf4_fp8(
    weight: torch.Tensor,
    state: Any,
    *,
    transposed: bool = False,
    kernel: Any = None,
    tile_rows: int = TILE_ROWS,
    num_warps: int = 4,
) -> torch.Tensor:
    """A packed NF4 weight as e4m3 (out, in), or (in, out) when `transposed`, in one pass: no dense 16-bit
    copy is written. Its scales are `weight_row_scales`. `kernel` replaces the compiled kernel (the tests
    pass Triton's interpreter)."""
    if weight.dtype != torch.uint8:
        weight = weight.view(torch.uint8)
    out_features, in_features = state.shape
    out = torch.empty(
        (in_features, out_features) if transposed else (out_features, in_features),
        dtype=E4M3,
        device=weight.device,
    )
    *scale_arguments, nested_block = nf4_dequant.block_arguments(state, weight.device)
    grid = (triton.cdiv(out_features, tile_rows), in_features // state.blocksize)
    (kernel or compiled_kernels()[0])[grid](
        weight.reshape(-1),
        *scale_arguments,
        weight_row_scales(weight, state),
        out,
        out_features,
        in_features,
        NESTED=bool(state.nested),
        BLOCK=state.blocksize,
        NESTED_BLOCK=nested_block,
        TILE_ROWS=tile_rows,
        TRANSPOSED=transposed,
        **rounding_constants(E4M3),
        num_warps=num_warps,
        enable_fp_fusion=False,  # bitsandbytes rounds the nested scale's product before its sum
    )
    return out


def reference_dequantize_fp8(weight: torch.Tensor, state: Any, *, transposed: bool = False) -> torch.Tensor:
    """The same as `dequantize_nf4_fp8` in torch ops: bitsandbytes' fp32 dequantization × the row scales'
    reciprocals, cast to e4m3 (round to nearest even). Any 4-bit weight, any device."""
    from forumtune.kernels.lora_linear import dequantize_weight

    dense = dequantize_weight(weight, state, torch.float32, "bitsandbytes")
    quantized = (dense * (1.0 / weight_row_scales(weight, state))[:, None]).to(E4M3)
    return quantized.t().contiguous() if transposed else quantized


def quantize_rows(
    x: torch.Tensor,
    dtype: torch.dtype = E4M3,
    col_scales: torch.Tensor | None = None,
    *,
    kernel: Any = None,
    block: int = QUANT_BLOCK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A (rows, cols) matrix, times `col_scales` along its columns when given, in fp8 with one fp32 scale per
    row ((rows, 1), `_scaled_mm`'s rowwise layout): values × 1 / (row amax / fp8 max), rounded to nearest
    even. A Triton kernel on CUDA (or `kernel`), torch ops elsewhere."""
    if not (kernel is not None or (available and x.is_cuda)):
        return reference_quantize_rows(x, dtype, col_scales)
    x = x.contiguous()
    rows, cols = x.shape
    out = torch.empty((rows, cols), dtype=dtype, device=x.device)
    scales = torch.empty((rows, 1), dtype=torch.float32, device=x.device)
    (kernel or compiled_kernels()[1])[(rows,)](
        x,
        x if col_scales is None else col_scales,
        out,
        scales,
        cols,
        HAS_COL_SCALES=col_scales is not None,
        FP8_MAX=FORMATS[dtype].max,
        BLOCK=min(block, triton.next_power_of_2(cols)),
        **rounding_constants(dtype),
        num_warps=4,
        enable_fp_fusion=False,
    )
    return out, scales


def true_divide(values: torch.Tensor, divisor: float) -> torch.Tensor:
    """values / divisor, correctly rounded on every device. On CUDA, torch divides by a Python number as a
    multiply by its reciprocal, one rounding more (ATen's div_true_kernel_cuda), which gave the references
    scales an ulp off the kernels' `div_rn` (and the bytes they scale) on the GPU but not on the CPU."""
    return values / torch.full((), divisor, dtype=values.dtype, device=values.device)


def reference_quantize_rows(
    x: torch.Tensor, dtype: torch.dtype = E4M3, col_scales: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    values = x.float() if col_scales is None else x.float() * col_scales
    amax = values.abs().amax(dim=1, keepdim=True)
    scales = torch.where(amax > 0, true_divide(amax, FORMATS[dtype].max), torch.ones_like(amax))
    return (values * (1.0 / scales)).to(dtype), scales


def dequantize_for_fp8(weight: torch.Tensor, state: Any, *, transposed: bool) -> torch.Tensor:
    if triton_dequantizes(weight, state):
        return dequantize_nf4_fp8(weight, state, transposed=transposed)
    return reference_dequantize_fp8(weight, state, transposed=transposed)


def base_product(
    rows: torch.Tensor, weight: torch.Tensor, state: Any, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """x W^T (+ bias) in bf16, from fp8 operands: x (tokens, in) with a scale per token, W with a scale per
    output row."""
    x_fp8, x_scales = quantize_rows(rows)
    w_fp8 = dequantize_for_fp8(weight, state, transposed=False)
    return torch._scaled_mm(
        x_fp8,
        w_fp8.t(),  # (in, out), column-major: the layout _scaled_mm's second operand needs
        scale_a=x_scales,
        scale_b=weight_row_scales(weight, state).view(1, -1),
        bias=None if bias is None else bias.to(torch.bfloat16),
        out_dtype=torch.bfloat16,
        use_fast_accum=FAST_ACCUM,
    )


def base_input_grad(grad: torch.Tensor, weight: torch.Tensor, state: Any) -> torch.Tensor:
    """dy W in bf16, from fp8 operands: W's row scales folded into dy's columns before dy is quantized per
    row, W in e4m3 transposed (stored (in, out), read as (out, in) column-major)."""
    grad_fp8, grad_scales = quantize_rows(grad, GRAD_DTYPE, weight_row_scales(weight, state))
    w_fp8_t = dequantize_for_fp8(weight, state, transposed=True)
    return torch._scaled_mm(
        grad_fp8,
        w_fp8_t.t(),
        scale_a=grad_scales,
        scale_b=torch.ones((1, w_fp8_t.shape[0]), dtype=torch.float32, device=grad.device),
        out_dtype=torch.bfloat16,
        use_fast_accum=FAST_ACCUM,
    )
