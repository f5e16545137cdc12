"""train.base_matmul: fp8 on the CPU. The Triton kernels run under Triton's interpreter and must equal the
torch references bit for bit; the fp8 layer and a whole tiny model (real bitsandbytes NF4) run through
torch._scaled_mm's CPU kernel and are compared with the bf16 path and an fp32 reference.

Measured here (relative Frobenius error against fp32; the asserts leave room above these): the base
products of one Mistral-shaped NF4 layer, x Wᵀ 3.1e-2 and dy W 3.7e-2 in fp8 (bf16: 2.8e-3), from rounding
x by 1.7e-2 and W by 2.5e-2; the whole fused layer (LoRA term included) y 2.9e-2 and dx 3.4e-2 (bf16:
3.0e-3), dx 5.4e-2 with dy in e5m2, so dy is e4m3. The layer's LoRA gradients do not go through a base
product: they are bf16's. First-step LoRA gradients of tiny models: test_first_step_lora_gradients_of_a_model
(fp8 7.1e-2 to 7.8e-2 against fp32, bf16 9.2e-3).
"""

from __future__ import annotations

import pytest
import torch

triton = pytest.importorskip("triton")
import bitsandbytes.functional as F
from transformers import AutoModelForCausalLM, BitsAndBytesConfig
from triton.runtime.interpreter import InterpretedFunction

from forumtune.kernels import fp8_matmul, lora_linear, nf4_dequant
from forumtune.train.layer_checkpointing import use_layer_checkpointing
from forumtune.train.precision import prepare_for_qlora
from tests.kernels.test_kernels import ARCHITECTURES, SHAPE, batch, lora, relative_error

E4M3, E5M2 = torch.float8_e4m3fn, torch.float8_e5m2
DEQUANTIZE = InterpretedFunction(fp8_matmul.dequantize_nf4_fp8_body)
QUANTIZE = InterpretedFunction(fp8_matmul.quantize_rows_body)


@pytest.fixture(autouse=True)
def interpreted_device_functions(monkeypatch):
    """The jitted functions the kernels call, as the interpreter runs them."""
    monkeypatch.setattr(fp8_matmul, "round_to_grid", InterpretedFunction(fp8_matmul.round_to_fp8_grid))
    monkeypatch.setattr(fp8_matmul, "block_values", InterpretedFunction(nf4_dequant.nf4_block_values))


def nf4(shape, nested: bool, blocksize: int = 64, seed: int = 0):
    weight = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 0.05
    weight[1] *= 1e-4  # a row of tiny weights: its scale is tiny too
    weight[2, :blocksize] *= 1e-5  # a block far below its row's largest: fp8 subnormals
    return F.quantize_4bit(
        weight.to(torch.bfloat16), blocksize=blocksize, quant_type="nf4", compress_statistics=nested
    )


def as_bytes(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.view(torch.uint8)


@pytest.mark.parametrize("nested", [True, False], ids=["double-quant", "fp32-scales"])
@pytest.mark.parametrize(
    "shape,blocksize,tile_rows", [((96, 320), 64, 32), ((80, 256), 128, 64), ((5, 64), 64, 8)]
)
def test_dequantize_to_fp8_is_bitsandbytes_over_the_row_scale(nested, shape, blocksize, tile_rows):
    packed, state = nf4(shape, nested, blocksize)
    exact = F.dequantize_4bit(packed, state).float()  # bitsandbytes' weights (bf16 holds code × absmax here)
    dense = lora_linear.dequantize_weight(packed, state, torch.float32, "bitsandbytes")
    assert torch.equal(dense.to(torch.bfloat16).float(), exact)
    scales = fp8_matmul.weight_row_scales(packed, state)
    assert torch.equal(scales, dense.abs().amax(dim=1) / 448)  # the block scales give each row's largest
    reference = (dense * (1 / scales)[:, None]).to(E4M3)
    assert (as_bytes(reference) & 0x7F).ne(0x7F).all()  # no NaN: nothing beyond 448
    subnormal = ((as_bytes(reference) & 0x78) == 0).logical_and(as_bytes(reference) & 7 != 0)
    # a block 1e-5 of its row's largest: fp8 subnormals (double quantization stores the block's absmax
    # relative to the mean absmax, which lifts it out of their range)
    assert subnormal.any() or nested or shape[1] == blocksize  # (one block a row: its own scale)

    for transposed in (False, True):
        out = fp8_matmul.dequantize_nf4_fp8(
            packed, state, transposed=transposed, kernel=DEQUANTIZE, tile_rows=tile_rows
        )
        expected = reference.t().contiguous() if transposed else reference
        assert out.dtype == E4M3 and out.shape == expected.shape
        assert torch.equal(as_bytes(out), as_bytes(expected))
        again = fp8_matmul.reference_dequantize_fp8(packed, state, transposed=transposed)
        assert torch.equal(as_bytes(again), as_bytes(expected))


def every_midpoint(dtype: torch.dtype) -> torch.Tensor:
    """Each point halfway between two neighbouring positive values of the format (ties: rounding to
    nearest even decides them), and the format's largest value, so that a row's scale is exactly 1."""
    values = torch.arange(1, 127 if dtype == E4M3 else 124, dtype=torch.uint8).view(dtype).float()
    halfway = (values[:-1] + values[1:]) / 2
    return torch.cat([halfway, -halfway, values[-1:]])


@pytest.mark.parametrize("dtype", [E4M3, E5M2], ids=["e4m3", "e5m2"])
@pytest.mark.parametrize("with_col_scales", [False, True], ids=["plain", "column-scaled"])
def test_quantize_rows_rounds_as_torch_does(dtype, with_col_scales):
    generator = torch.Generator().manual_seed(3)
    rows = torch.randn(6, 300, generator=generator) * torch.logspace(-6, 3, 6)[:, None]
    rows[2] = 0.0  # an all-zero row: scale 1, zeros
    rows[3, :100] *= 1e-6  # subnormals within a row
    col_scales = torch.rand(300, generator=generator) + 1e-3 if with_col_scales else None
    x = rows.to(torch.bfloat16)
    q, scales = fp8_matmul.quantize_rows(x, dtype, col_scales, kernel=QUANTIZE, block=128)
    ref_q, ref_scales = fp8_matmul.reference_quantize_rows(x, dtype, col_scales)
    assert q.dtype == dtype and scales.shape == (6, 1) and scales[2].item() == 1.0
    assert torch.equal(scales, ref_scales)
    assert torch.equal(as_bytes(q), as_bytes(ref_q))
    assert as_bytes(q).ne(0).any()

    ties = every_midpoint(dtype)[None, :]
    q, scales = fp8_matmul.quantize_rows(ties, dtype, kernel=QUANTIZE, block=64)
    assert scales.item() == 1.0
    assert torch.equal(as_bytes(q), as_bytes(ties.to(dtype)))  # torch rounds to nearest even


def layer_outputs(x, packed, state, mode: str, dtype: torch.dtype, bias=None):
    """y, dx, dA, dB of one fused LoRA layer (r 16, scale 2) for a fixed output gradient."""
    generator = torch.Generator().manual_seed(5)
    lora_a = (torch.randn(16, x.shape[1], generator=generator) * 0.05).requires_grad_()
    lora_b = (torch.randn(state.shape[0], 16, generator=generator) * 0.05).requires_grad_()
    x = x.to(dtype).detach().requires_grad_()
    y = lora_linear.QLoRAMatmul.apply(
        x, None, lora_a, lora_b, packed, state, bias, 2.0, False, "bitsandbytes", mode
    )
    (y.float() * torch.randn(y.shape, generator=generator)).sum().backward()
    return [t.detach().float() for t in (y, x.grad, lora_a.grad, lora_b.grad)]


def mistral_like_layer():
    """A 256 → 512 NF4 projection (double quantization) and 384 tokens with a few outlier channels, as LLM
    activations have."""
    packed, state = nf4((512, 256), nested=True, seed=4)
    x = torch.randn(384, 256, generator=torch.Generator().manual_seed(6))
    x[:, :4] *= 20
    return x, packed, state


def test_the_base_products_are_within_e4m3_rounding_of_fp32():
    x, packed, state = mistral_like_layer()
    dense = lora_linear.dequantize_weight(packed, state, torch.float32, "bitsandbytes")
    grad = torch.randn(384, 512, generator=torch.Generator().manual_seed(3))
    rows, grads = x.to(torch.bfloat16), grad.to(torch.bfloat16)
    products = relative_error(fp8_matmul.base_product(rows, packed, state).float(), x @ dense.t())
    input_grads = relative_error(fp8_matmul.base_input_grad(grads, packed, state).float(), grad @ dense)
    bf16 = relative_error((rows @ dense.to(torch.bfloat16).t()).float(), x @ dense.t())
    # measured 3.1e-2 and 3.7e-2 (bf16 2.8e-3): e4m3 keeps 3 mantissa bits, about 2.5% rounding per operand
    assert 2e-2 < products < 5e-2 and 2e-2 < input_grads < 5e-2 and bf16 < 5e-3
    x_fp8, x_scales = fp8_matmul.quantize_rows(rows)
    assert relative_error(x_fp8.float() * x_scales, rows.float()) < 3e-2  # measured 1.7e-2
    w_fp8 = fp8_matmul.reference_dequantize_fp8(packed, state).float()
    assert (
        relative_error(w_fp8 * fp8_matmul.weight_row_scales(packed, state)[:, None], dense) < 3e-2
    )  # 2.5e-2


def test_the_fp8_layer_is_within_fp8_rounding_of_fp32_and_its_lora_gradients_are_bf16s():
    x, packed, state = mistral_like_layer()
    reference = layer_outputs(x, packed, state, "bf16", torch.float32)
    bf16 = [
        relative_error(a, b)
        for a, b in zip(layer_outputs(x, packed, state, "bf16", torch.bfloat16), reference)
    ]
    fp8 = [
        relative_error(a, b)
        for a, b in zip(layer_outputs(x, packed, state, "fp8", torch.bfloat16), reference)
    ]
    # measured: y 2.9e-2, dx 3.4e-2 (bf16 3.0e-3): e4m3 keeps 3 mantissa bits, a relative rounding error
    # of up to 6% per operand and about 2.5% on average
    assert 1e-2 < fp8[0] < 5e-2 and 1e-2 < fp8[1] < 5e-2
    assert bf16[0] < 6e-3 and bf16[1] < 6e-3
    # dA and dB come from x, dy and the LoRA product, never from the base's: the same as bf16's
    assert fp8[2:] == pytest.approx(bf16[2:], rel=1e-6) and max(fp8[2:]) < 6e-3


def test_dy_in_e4m3_gives_a_smaller_input_gradient_error_than_e5m2(monkeypatch):
    x, packed, state = mistral_like_layer()
    reference = layer_outputs(x, packed, state, "bf16", torch.float32)[1]
    errors = {}
    for dtype in (E4M3, E5M2):
        monkeypatch.setattr(fp8_matmul, "GRAD_DTYPE", dtype)
        errors[dtype] = relative_error(layer_outputs(x, packed, state, "fp8", torch.bfloat16)[1], reference)
    # measured 3.4e-2 against 5.4e-2: with a scale per row, e5m2's wider range buys nothing here
    assert errors[E4M3] < 0.75 * errors[E5M2]


def test_the_fp8_layer_adds_the_bias_and_falls_back_where_scaled_mm_cannot_run():
    x, packed, state = mistral_like_layer()
    bias = torch.randn(512, generator=torch.Generator().manual_seed(8), dtype=torch.bfloat16)
    with_bias = layer_outputs(x, packed, state, "fp8", torch.bfloat16, bias)[0]
    without = layer_outputs(x, packed, state, "fp8", torch.bfloat16)[0]
    assert relative_error(with_bias - without, bias.float().expand_as(with_bias)) < 1e-2

    odd_packed, odd_state = nf4((72, 128), nested=True)  # 72 rows: not a multiple of 16
    assert not fp8_matmul.fits(odd_state)
    odd_x = x[:, :128]
    assert layer_outputs(odd_x, odd_packed, odd_state, "fp8", torch.bfloat16)[0].equal(
        layer_outputs(odd_x, odd_packed, odd_state, "bf16", torch.bfloat16)[0]
    )


@pytest.fixture(scope="module", params=["mistral", "qwen2"])
def bf16_model_dir(request, tmp_path_factory) -> str:
    """A tiny model saved in bf16, so that loading it in fp32 or bf16 quantizes the same weights."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(ARCHITECTURES[request.param]())
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 1:
                parameter.add_(torch.randn_like(parameter), alpha=0.1)
    path = tmp_path_factory.mktemp(f"{request.param}-bf16")
    model.to(torch.bfloat16).save_pretrained(path)
    return str(path)


def first_step_grads(model_dir: str, dtype: torch.dtype, base_matmul: str, skip_unread: bool = True):
    """The fast path's first-step LoRA gradients (checkpointed layers, fused LoRA) on a real NF4 model."""
    model = AutoModelForCausalLM.from_pretrained(
        model_dir,
        dtype=dtype,
        device_map={"": "cpu"},
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        ),
    )
    model.config.use_cache = False
    model = lora(prepare_for_qlora(model, gradient_checkpointing=True))
    use_layer_checkpointing(model)
    options = lora_linear.FusedLoRA(base_matmul=base_matmul, skip_unread_outputs=skip_unread)
    lora_linear.use_fused_lora(model, options)
    model.train()
    loss = model(**batch()).loss
    loss.backward()
    packed = model.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight
    grads = {n: p.grad.float() for n, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads, packed.detach().clone()


def overall_error(grads, reference) -> float:
    diff = sum(float((grads[n] - reference[n]).norm()) ** 2 for n in reference) ** 0.5
    return diff / sum(float(reference[n].norm()) ** 2 for n in reference) ** 0.5


def test_first_step_lora_gradients_of_a_model(bf16_model_dir):
    ref_loss, reference, ref_packed = first_step_grads(bf16_model_dir, torch.float32, "bf16")
    results = {mode: first_step_grads(bf16_model_dir, torch.bfloat16, mode) for mode in ("bf16", "fp8")}
    assert all(torch.equal(packed, ref_packed) for _, _, packed in results.values())  # the same NF4 weights
    errors = {}
    for mode, (loss, grads, _) in results.items():
        assert grads.keys() == reference.keys() and len(grads) == 7 * 2 * SHAPE["num_hidden_layers"]
        errors[mode] = overall_error(grads, reference)
        worst = max(relative_error(grads[n], reference[n]) for n in reference)
        print(
            f"{mode}: loss {loss:.5f} (fp32 {ref_loss:.5f}), LoRA grads vs fp32: overall {errors[mode]:.2e}, worst {worst:.2e}"
        )
        assert loss == pytest.approx(ref_loss, rel=2e-2)
    assert errors["bf16"] < 1.5e-2
    assert errors["bf16"] < errors["fp8"] < 0.15


def test_the_recompute_still_skips_the_unread_down_projection(bf16_model_dir, monkeypatch):
    calls = {"products": 0, "input_grads": 0}
    product, input_grad = fp8_matmul.base_product, fp8_matmul.base_input_grad

    def counted(name, function):
        def run(*args):
            calls[name] += 1
            return function(*args)

        return run

    monkeypatch.setattr(fp8_matmul, "base_product", counted("products", product))
    monkeypatch.setattr(fp8_matmul, "base_input_grad", counted("input_grads", input_grad))
    layers = SHAPE["num_hidden_layers"]
    skipped = first_step_grads(bf16_model_dir, torch.bfloat16, "fp8")
    # forward 7 per layer, the recompute 6 (not the down projection), backward 7 input gradients but the
    # first layer's q, k and v (the frozen embedding wants no gradient)
    input_grads = 7 * layers - 3
    assert calls == {"products": 13 * layers, "input_grads": input_grads}
    unskipped = first_step_grads(bf16_model_dir, torch.bfloat16, "fp8", skip_unread=False)
    assert calls == {"products": 13 * layers + 14 * layers, "input_grads": 2 * input_grads}
    assert skipped[0] == unskipped[0]
    for name, grad in skipped[1].items():
        assert torch.equal(grad, unskipped[1][name]), name


def test_with_lora_dropout_the_dropped_inputs_gradient_is_bf16s():
    x, packed, state = mistral_like_layer()
    keep = torch.rand(x.shape, generator=torch.Generator().manual_seed(9)) > 0.2
    results = {}
    for mode in ("bf16", "fp8"):
        generator = torch.Generator().manual_seed(5)
        lora_a = torch.randn(16, 256, generator=generator) * 0.05
        lora_b = torch.randn(512, 16, generator=generator) * 0.05
        rows = x.to(torch.bfloat16).requires_grad_()
        dropped = (x * keep / 0.8).to(torch.bfloat16).requires_grad_()
        y = lora_linear.QLoRAMatmul.apply(
            rows, dropped, lora_a, lora_b, packed, state, None, 2.0, False, "bitsandbytes", mode
        )
        (y.float() * torch.randn(y.shape, generator=generator)).sum().backward()
        results[mode] = y.detach().float(), rows.grad.float(), dropped.grad.float()
    assert 1e-2 < relative_error(results["fp8"][0], results["bf16"][0]) < 3.5e-2
    # dx here is dy W alone (the LoRA term goes to the dropped input): measured 3.6e-2
    assert 1e-2 < relative_error(results["fp8"][1], results["bf16"][1]) < 5e-2
    assert torch.equal(results["fp8"][2], results["bf16"][2])  # (s dy B) A: no base product in it
