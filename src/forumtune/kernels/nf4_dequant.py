"""NF4 weights (bitsandbytes' format, double quantization included) to bf16/fp16 in one Triton kernel.

bitsandbytes dequantizes a double-quantized weight in two kernels: the 8-bit block scales to an fp32
tensor, then the 4-bit codes times those scales. This kernel reads the packed codes and the 8-bit scales
once and writes the dense weight, doing the same fp32 arithmetic in the same order, so its output is
bit-identical to bitsandbytes'. One program handles `ROWS` quantization blocks, so each block's scale is
loaded once rather than per element.

Packed layout (bitsandbytes): byte i holds elements 2i (high nibble) and 2i + 1 (low nibble); element j
belongs to block j // blocksize; a nested scale is `code2[absmax_q] * absmax2[block // blocksize2] + offset`.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # without Triton, bitsandbytes' kernels are used (annotations stay unevaluated strings)
    triton = tl = None

ROWS = 32  # quantization blocks per program
NUM_WARPS = 2


def nf4_block_values(
    packed,
    block_codes,
    block_scales,
    scale_code,
    offset_ptr,
    nf4_code,
    blocks,
    in_range,
    NESTED: tl.constexpr,
    BYTES_PER_BLOCK: tl.constexpr,
    NESTED_BLOCK: tl.constexpr,
    ROWS: tl.constexpr,
):
    """The fp32 weights of ROWS quantization blocks (one block a row, in stored order): NF4 code × the
    block's scale, the nested scale's product rounded before its sum as bitsandbytes does it."""
    byte_index = blocks[:, None] * BYTES_PER_BLOCK + tl.arange(0, BYTES_PER_BLOCK)[None, :]
    codes = tl.load(packed + byte_index, mask=in_range[:, None], other=0).to(tl.int32)
    if NESTED:
        quantized = tl.load(block_codes + blocks, mask=in_range, other=0).to(tl.int32)
        scale = (
            tl.load(scale_code + quantized)
            * tl.load(block_scales + blocks // NESTED_BLOCK, mask=in_range, other=0.0)
        ) + tl.load(offset_ptr)
    else:
        scale = tl.load(block_scales + blocks, mask=in_range, other=0.0)
    high = tl.load(nf4_code + (codes >> 4)) * scale[:, None]
    low = tl.load(nf4_code + (codes & 15)) * scale[:, None]
    return tl.reshape(tl.join(high, low), (ROWS, 2 * BYTES_PER_BLOCK))  # interleaved


def dequantize_nf4_body(
    packed,
    block_codes,
    block_scales,
    scale_code,
    offset_ptr,
    nf4_code,
    out,
    n_blocks,
    NESTED: tl.constexpr,
    BYTES_PER_BLOCK: tl.constexpr,
    NESTED_BLOCK: tl.constexpr,
    ROWS: tl.constexpr,
):
    blocks = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    in_range = blocks < n_blocks
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
        BYTES_PER_BLOCK,
        NESTED_BLOCK,
        ROWS,
    ).to(out.dtype.element_ty)
    out_index = blocks[:, None] * (2 * BYTES_PER_BLOCK) + tl.arange(0, 2 * BYTES_PER_BLOCK)[None, :]
    tl.store(out + out_index, values, mask=in_range[:, None])


available = triton is not None
# the kernels call the block decoding through this name: jitted here, Triton's interpreter in the CPU tests
block_values = triton.jit(nf4_block_values) if available else None


@functools.cache
def compiled_kernel() -> Any:
    return triton.jit(dequantize_nf4_body)


def supports(weight: torch.Tensor, state: Any) -> bool:
    """Whether this kernel handles the weight: NF4 on a CUDA device, a power-of-two block size, and (when
    nested) 8-bit block scales."""
    blocksize = state.blocksize
    return (
        available
        and weight.is_cuda
        and state.quant_type == "nf4"
        and blocksize >= 2
        and blocksize & (blocksize - 1) == 0
        and (not state.nested or state.absmax.dtype == torch.uint8)
    )


def dequantize_nf4(
    weight: torch.Tensor,
    state: Any,
    dtype: torch.dtype,
    *,
    kernel: Any = None,
    rows: int = ROWS,
    num_warps: int = NUM_WARPS,
) -> torch.Tensor:
    """The dense (out, in) matrix of a packed NF4 weight and its QuantState. `kernel` replaces the compiled
    kernel (the tests pass Triton's interpreter to run it on a CPU); `rows` and `num_warps` are for tuning."""
    if weight.dtype != torch.uint8:
        weight = weight.view(torch.uint8)
    numel = torch.Size(state.shape).numel()
    if numel % state.blocksize:
        raise ValueError(f"{numel} weights do not fill blocks of {state.blocksize}")
    n_blocks = numel // state.blocksize
    out = torch.empty(tuple(state.shape), dtype=dtype, device=weight.device)
    *scale_arguments, nested_block = block_arguments(state, weight.device)
    launch = (kernel or compiled_kernel())[(triton.cdiv(n_blocks, rows),)]
    launch(
        weight.reshape(-1),
        *scale_arguments,
        out.reshape(-1),
        n_blocks,
        NESTED=bool(state.nested),
        BYTES_PER_BLOCK=state.blocksize // 2,
        NESTED_BLOCK=nested_block,
        ROWS=rows,
        num_warps=num_warps,
        enable_fp_fusion=False,
    )  # bitsandbytes rounds the scale's product before its sum
    return out


def block_arguments(state: Any, device: torch.device) -> tuple[Any, ...]:
    """What `nf4_block_values` reads besides the packed bytes: (8-bit block codes, block scales, the
    scales' code, the offset, the NF4 code) and the nested block size; without double quantization the
    block scales are the fp32 absmax and the rest is unread."""
    nf4_code = state.code.to(device=device, dtype=torch.float32)
    if not state.nested:
        return state.absmax, state.absmax, state.absmax, state.absmax, nf4_code, 1
    offset = torch.as_tensor(state.offset, dtype=torch.float32, device=device).reshape(1)
    return state.absmax, state.state2.absmax, state.state2.code, offset, nf4_code, state.state2.blocksize
