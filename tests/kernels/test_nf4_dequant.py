"""The Triton NF4 dequantize kernel, run by Triton's interpreter on the CPU, against bitsandbytes'
quantization of real weights. The interpreter computes in fp32 exactly as the GPU does, but converts to
bf16 by truncating where the GPU rounds to nearest, so bf16 is checked to one unit in the last place here
and bit for bit against bitsandbytes in the GPU benchmark (benchmarks/dequant.py)."""

from __future__ import annotations

import pytest
import torch

triton = pytest.importorskip("triton")
import bitsandbytes.functional as F
from triton.runtime.interpreter import InterpretedFunction

from forumtune.kernels import nf4_dequant

INTERPRETED = InterpretedFunction(nf4_dequant.dequantize_nf4_body)


@pytest.fixture(autouse=True)
def interpreted_device_functions(monkeypatch):
    """The jitted function the kernel calls, as the interpreter runs it."""
    monkeypatch.setattr(nf4_dequant, "block_values", InterpretedFunction(nf4_dequant.nf4_block_values))


def exact_fp32(packed: torch.Tensor, state) -> torch.Tensor:
    """code[nibble] * block scale in fp32, with bitsandbytes' own nested-scale dequantization."""
    scales = (
        F.dequantize_blockwise(state.absmax, state.state2) + state.offset if state.nested else state.absmax
    )
    data = packed.reshape(-1).to(torch.int64)
    codes = torch.stack([data >> 4, data & 15], dim=1).reshape(-1)
    return (state.code[codes].reshape(-1, state.blocksize) * scales[:, None]).reshape(state.shape)


@pytest.mark.parametrize("nested", [True, False], ids=["double-quant", "fp32-scales"])
@pytest.mark.parametrize(
    "shape,blocksize,rows", [((64, 128), 64, 32), ((96, 320), 64, 8), ((5, 64), 64, 32), ((48, 256), 128, 4)]
)
def test_matches_bitsandbytes(nested, shape, blocksize, rows):
    torch.manual_seed(0)
    weight = torch.randn(shape, dtype=torch.bfloat16) * 0.05
    packed, state = F.quantize_4bit(weight, blocksize=blocksize, quant_type="nf4", compress_statistics=nested)
    assert state.nested == nested

    exact = exact_fp32(packed, state)
    assert torch.equal(F.dequantize_4bit(packed, state), exact.to(torch.bfloat16))  # the reference is bnb's

    as_fp32 = nf4_dequant.dequantize_nf4(packed, state, torch.float32, kernel=INTERPRETED, rows=rows)
    assert torch.equal(as_fp32, exact)
    as_fp16 = nf4_dequant.dequantize_nf4(packed, state, torch.float16, kernel=INTERPRETED, rows=rows)
    assert torch.equal(as_fp16, exact.to(torch.float16))
    as_bf16 = nf4_dequant.dequantize_nf4(packed, state, torch.bfloat16, kernel=INTERPRETED, rows=rows)
    reference = F.dequantize_4bit(packed, state)
    ulp = torch.finfo(torch.bfloat16).eps * reference.float().abs()
    assert ((as_bf16.float() - reference.float()).abs() <= ulp).all()


def test_refuses_what_it_does_not_handle():
    weight = torch.randn(64, 64, dtype=torch.bfloat16)
    _, fp4_state = F.quantize_4bit(weight, blocksize=64, quant_type="fp4")
    packed, nf4_state = F.quantize_4bit(weight, blocksize=64, quant_type="nf4")
    assert not nf4_dequant.supports(packed, fp4_state)
    assert not nf4_dequant.supports(packed, nf4_state)  # a CPU tensor: bitsandbytes' path
