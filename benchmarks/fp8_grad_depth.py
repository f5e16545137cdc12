#!/usr/bin/env python3
"""Why FP8 base products (train.base_matmul: fp8) move the first-step LoRA gradients of a deep random model
so much more than bf16 does, layer by layer, on the CPU.

A Mistral-shaped model with random weights (normal, std 0.02, norms at identity: bench_common's
ensure_model, as the GPU benchmarks use), deep and narrow (32 layers, hidden 384, GQA by default), in
NF4 with double quantization, one batch of random tokens. Its first-step LoRA gradients on the fused
QLoRA path are compared with the same NF4 model run in fp32, per decoder layer and overall (norm of all
differences / norm of all references), for:

    bf16            the bf16 base products
    fp8             kernels.fp8_matmul as it is (x and dy rows in e4m3, one scale per row)
    fp8 sim         the same arithmetic simulated in fp32 (quantize, dequantize, matmul): checks the
                    simulations below against the real thing
    a: fwd fp8      fp8 forward, dx = dy W in bf16
    e: bwd fp8      bf16 forward, fp8 dx
    b: dy blk128    dy quantized with one scale per 1x128 block of columns instead of per row
    c: dy e5m2      dy in e5m2 (per row)
    d: x blk128     x quantized with one scale per 1x128 block in the forward
    f: fwd x only   forward with only x rounded to e4m3 (W exact), dx in bf16 (simulated)
    g: fwd W only   forward with only W rounded to e4m3 (x exact), dx in bf16 (simulated)
    h, i, j         fp8 as it is, but q and k (h), the attention's four (i) or the MLP's three (j)
                    projections with bf16 products
    b+d             both

and the forward's hidden states against fp32's after each layer (where rounding in the forward grows
with depth, every later gradient inherits it). --lora-b zero keeps peft's initialization (B = 0: lora_A's
gradients are exactly zero and only lora_B's count, as in train_throughput.py's comparison); random
draws B as the tests do so that both count.

    python benchmarks/fp8_grad_depth.py --out benchmarks/results/fp8-grad-depth.json
    python benchmarks/fp8_grad_depth.py --layers 4 --hidden 128 --tokens 64 --variants bf16,fp8   # smoke

The fp8 products run through torch._scaled_mm's CPU kernel and the torch references of the fp8 kernels
(the same arithmetic as the GPU's, bit for bit); the simulated variants round with the same torch casts.
Checkpointing is off: the recompute replays the same deterministic forward, so the gradients are the same.

Measured (CPU, 32 layers, hidden 384, 256 tokens, lora_B = 0; results/fp8-grad-depth-cpu*.json), overall
error of the LoRA gradients against fp32:

    weights                      bf16     fp8      a: dx bf16  e: fwd bf16  b / c / d (dy blk, e5m2, x blk)
    std 0.02                     1.7e-2   1.4e-1   1.2e-1      7.5e-2       1.5e-1 / 1.5e-1 / 1.3e-1
    --std-as-hidden 4096         1.3e-1   9.4e-1   9.4e-1      1.8e-1       9.4e-1 / 9.4e-1 / 9.6e-1

The second row reproduces the GPU's Mistral-7B-shaped random model (bf16 9.4e-2, fp8 9.2e-1): what sets
the size is each projection's gain (0.02 x sqrt(4096) = 1.28), not the width. Every layer's gradients are
off by about the same (0.87-0.94): every dy derives from the logits, and the forward's hidden states drift
from fp32's by 13% after the first layer to 62% after the last (bf16: 1.3% to 7.3%), about as the square
root of depth. Over depth at that gain (4, 8, 16, 32 layers): bf16 3.6e-2, 5.4e-2, 8.6e-2, 1.3e-1; fp8
3.6e-1, 5.3e-1, 7.4e-1, 9.4e-1. fp8 is ~10x bf16 (3 mantissa bits against 7) wherever it has not yet
saturated: the forward's e4m3 rounding (x alone 7.9e-1, W alone 7.5e-1, attention or MLP kept in bf16
6.6e-1 / 8.5e-1), not the input gradient, scale granularity or dy's format.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common as bc

E4M3, E5M2 = torch.float8_e4m3fn, torch.float8_e5m2
BLOCK = 128  # the 1x128 blocks of the block-scaled variants (DeepSeek-V3's activation tiles)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--intermediate", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--tokens", type=int, default=256, help="one sequence of this many tokens")
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-b", choices=("zero", "random"), default="zero")
    parser.add_argument(
        "--std-as-hidden",
        type=int,
        default=None,
        metavar="H",
        help="scale the weights to std 0.02 * sqrt(H / hidden): each projection's gain is then that of a "
        "model of hidden size H at std 0.02 (4096: the Mistral-7B-shaped benchmark model's)",
    )
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated, of: " + ", ".join(VARIANTS)
    )
    parser.add_argument("--model-dir", type=Path, default=None, help="default: a temporary directory")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------ simulated fp8 products


def fake_quantize(values: torch.Tensor, dtype: torch.dtype, block: int | None) -> torch.Tensor:
    """fp32 values rounded to `dtype` with one scale per row (block None) or per 1 x block run of columns,
    and scaled back: what an fp8 operand with those scales holds."""
    rows, cols = values.shape
    if block is None or cols % block:
        block = cols
    tiles = values.reshape(rows, cols // block, block)
    amax = tiles.abs().amax(dim=2, keepdim=True)
    fp8_max = torch.finfo(dtype).max
    scales = torch.where(amax > 0, amax / fp8_max, torch.ones_like(amax))
    return ((tiles * (1.0 / scales)).to(dtype).float() * scales).reshape(rows, cols)


def fp8_weight(weight, state) -> torch.Tensor:
    """The NF4 weight as the fp8 path holds it (e4m3, a scale per output row), in fp32."""
    from forumtune.kernels import fp8_matmul

    scales = fp8_matmul.weight_row_scales(weight, state)
    return fp8_matmul.reference_dequantize_fp8(weight, state).float() * scales[:, None]


def simulated_product(
    x_block: int | None, *, round_x: bool = True, round_w: bool = True
) -> Callable[..., torch.Tensor]:
    """x Wᵀ from x and W as fp8 operands hold them (x per row or per block); `round_x`/`round_w` False keeps
    that operand exact (bf16 x, W as bitsandbytes dequantizes it in fp32): which rounding costs what."""

    def product(rows, weight, state, bias=None):
        from forumtune.kernels.lora_linear import dequantize_weight

        x = fake_quantize(rows.float(), E4M3, x_block) if round_x else rows.float()
        if round_w:
            w = fp8_weight(weight, state)
        else:
            w = dequantize_weight(weight, state, torch.float32, "bitsandbytes")
        out = x @ w.t()
        return (out if bias is None else out + bias.float()).to(torch.bfloat16)

    return product


def simulated_input_grad(dtype: torch.dtype, block: int | None) -> Callable[..., torch.Tensor]:
    """dy W with W's row scales folded into dy's columns (as fp8_matmul does) and dy rounded per row or block."""

    def input_grad(grad, weight, state):
        from forumtune.kernels import fp8_matmul

        scales = fp8_matmul.weight_row_scales(weight, state)
        w_q = fp8_matmul.reference_dequantize_fp8(weight, state).float()
        return (fake_quantize(grad.float() * scales, dtype, block) @ w_q).to(torch.bfloat16)

    return input_grad


def bf16_product(rows, weight, state, bias=None):
    from forumtune.kernels.lora_linear import dequantize_weight

    out = rows @ dequantize_weight(weight, state, torch.bfloat16, "bitsandbytes").t()
    return out if bias is None else out + bias.to(torch.bfloat16)


def bf16_input_grad(grad, weight, state):
    from forumtune.kernels.lora_linear import dequantize_weight

    return grad @ dequantize_weight(weight, state, torch.bfloat16, "bitsandbytes")


# name -> (compute dtype, base_matmul, replacements of fp8_matmul's functions)
VARIANTS: dict[str, tuple[torch.dtype, str, dict[str, Any]]] = {
    "fp32": (torch.float32, "bf16", {}),
    "bf16": (torch.bfloat16, "bf16", {}),
    "fp8": (torch.bfloat16, "fp8", {}),
    "fp8 sim": (
        torch.bfloat16,
        "fp8",
        {"base_product": simulated_product(None), "base_input_grad": simulated_input_grad(E4M3, None)},
    ),
    "a: fwd fp8": (torch.bfloat16, "fp8", {"base_input_grad": bf16_input_grad}),
    "e: bwd fp8": (torch.bfloat16, "fp8", {"base_product": bf16_product}),
    "b: dy blk128": (torch.bfloat16, "fp8", {"base_input_grad": simulated_input_grad(E4M3, BLOCK)}),
    "c: dy e5m2": (torch.bfloat16, "fp8", {"GRAD_DTYPE": E5M2}),
    "d: x blk128": (torch.bfloat16, "fp8", {"base_product": simulated_product(BLOCK)}),
    "f: fwd x only": (
        torch.bfloat16,
        "fp8",
        {"base_product": simulated_product(None, round_w=False), "base_input_grad": bf16_input_grad},
    ),
    "g: fwd W only": (
        torch.bfloat16,
        "fp8",
        {"base_product": simulated_product(None, round_x=False), "base_input_grad": bf16_input_grad},
    ),
    # fp8 everywhere but these projections, which keep bf16 products (the PROJECTIONS_IN_BF16 below)
    "h: q+k bf16": (torch.bfloat16, "fp8", {}),
    "i: attn bf16": (torch.bfloat16, "fp8", {}),
    "j: mlp bf16": (torch.bfloat16, "fp8", {}),
    "b+d": (
        torch.bfloat16,
        "fp8",
        {"base_product": simulated_product(BLOCK), "base_input_grad": simulated_input_grad(E4M3, BLOCK)},
    ),
}


PROJECTIONS_IN_BF16 = {
    "h: q+k bf16": ("q_proj", "k_proj"),
    "i: attn bf16": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "j: mlp bf16": ("gate_proj", "up_proj", "down_proj"),
}


def keep_in_bf16(model: torch.nn.Module, projections: tuple[str, ...]) -> None:
    """The fused forward of these projections with bf16 base products (use_fused_lora already ran)."""
    from forumtune.kernels import lora_linear

    options = lora_linear.FusedLoRA(dequantize="bitsandbytes", base_matmul="bf16")
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in projections and hasattr(module, "_forumtune_reference_forward"):
            reference = module._forumtune_reference_forward
            module.forward = functools.partial(lora_linear.fused_forward, module, reference, options)


@contextlib.contextmanager
def replaced(module: Any, replacements: dict[str, Any]) -> Iterator[None]:
    saved = {name: getattr(module, name) for name in replacements}
    for name, value in replacements.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


# ------------------------------------------------------------------------------------- one model run


def lora_model(model_dir: Path, dtype: torch.dtype, rank: int, lora_b: str):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from forumtune.train.precision import prepare_for_qlora

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
    model = prepare_for_qlora(model, gradient_checkpointing=False)
    torch.manual_seed(7)  # the same LoRA weights in every run
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear")
    model = get_peft_model(model, config)
    if lora_b == "random":
        for index, (name, parameter) in enumerate(model.named_parameters()):
            if "lora_B" in name:
                generator = torch.Generator().manual_seed(1000 + index)
                torch.nn.init.normal_(parameter, std=0.02, generator=generator)
    return model


def run_variant(model_dir: Path, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Loss, LoRA gradients (fp32) and the hidden states after each layer (fp32) of one variant."""
    from forumtune.kernels import fp8_matmul, lora_linear

    dtype, base_matmul, replacements = VARIANTS[name]
    model = lora_model(model_dir, dtype, args.lora_r, args.lora_b)
    lora_linear.use_fused_lora(
        model, lora_linear.FusedLoRA(dequantize="bitsandbytes", base_matmul=base_matmul)
    )
    keep_in_bf16(model, PROJECTIONS_IN_BF16.get(name, ()))
    model.train()
    ids = torch.randint(4, args.vocab, (1, args.tokens), generator=torch.Generator().manual_seed(1))
    started = time.perf_counter()
    with replaced(fp8_matmul, replacements):
        out = model(input_ids=ids, labels=ids, output_hidden_states=True)
        out.loss.backward()
    grads = {n: p.grad.float() for n, p in model.named_parameters() if p.grad is not None}
    hidden = [h.detach().float() for h in out.hidden_states]
    return {
        "loss": float(out.loss),
        "grads": grads,
        "hidden": hidden,
        "seconds": time.perf_counter() - started,
    }


def layer_of(name: str) -> int:
    parts = name.split(".")
    return int(parts[parts.index("layers") + 1])


def norm(tensors: list[torch.Tensor]) -> float:
    return sum(float(t.norm()) ** 2 for t in tensors) ** 0.5


def compare(run: dict[str, Any], ref: dict[str, Any], layers: int) -> dict[str, Any]:
    """Overall and per-layer relative error of the LoRA gradients (zero references left out: with B = 0
    lora_A's are exactly zero in every path), the worst tensor with its norm against the median
    reference norm, and each layer's hidden-state error."""
    names = [n for n in ref["grads"] if float(ref["grads"][n].norm()) > 0]
    diffs = {n: run["grads"][n] - ref["grads"][n] for n in names}
    per_tensor = {n: float(diffs[n].norm() / ref["grads"][n].norm()) for n in names}
    norms = sorted(float(ref["grads"][n].norm()) for n in names)
    median = norms[len(norms) // 2]
    worst = max(per_tensor, key=per_tensor.get)
    per_layer = []
    for layer in range(layers):
        mine = [n for n in names if layer_of(n) == layer]
        per_layer.append(norm([diffs[n] for n in mine]) / norm([ref["grads"][n] for n in mine]))
    sampled = [n for n in names if "lora_B" in n and layer_of(n) in (0, layers - 1)]
    hidden = [
        float((h - r).norm() / r.norm()) for h, r in zip(run["hidden"][1:], ref["hidden"][1:])
    ]  # [0] is the embedding, the same in both
    return {
        "loss": run["loss"],
        "overall": norm(list(diffs.values())) / norm([ref["grads"][n] for n in names]),
        "per_layer": per_layer,
        "hidden_per_layer": hidden,
        # train_throughput.py's comparison: lora_B of the first and the last layer
        "first_last_lora_b": norm([diffs[n] for n in sampled]) / norm([ref["grads"][n] for n in sampled]),
        "per_tensor": per_tensor,
        "worst_tensor": worst,
        "worst_error": per_tensor[worst],
        "worst_norm_over_median": float(ref["grads"][worst].norm()) / median,
        "tensors": len(names),
        "seconds": round(run["seconds"], 1),
    }


def rescale(model_dir: Path, factor: float) -> None:
    """Every weight but the norms (at identity) times `factor`, in the checkpoint's shards."""
    from safetensors.torch import load_file, save_file

    for shard in model_dir.glob("*.safetensors"):
        tensors = load_file(shard)
        for name, tensor in tensors.items():
            if "norm" not in name:
                tensors[name] = (tensor.float() * factor).to(tensor.dtype)
        save_file(tensors, str(shard), metadata={"format": "pt"})
    (model_dir / bc.MODEL_MARKER).unlink()  # no longer ensure_model's model


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    shape = bc.Shape(
        "depth",
        vocab=args.vocab,
        hidden=args.hidden,
        intermediate=args.intermediate,
        layers=args.layers,
        heads=args.heads,
        kv_heads=args.kv_heads,
    )
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = args.model_dir or Path(scratch)
        bc.ensure_model(model_dir, shape)
        if args.std_as_hidden:
            rescale(model_dir, (args.std_as_hidden / args.hidden) ** 0.5)
        ref = run_variant(model_dir, "fp32", args)
        results = {}
        for name in names:
            if name != "fp32":
                results[name] = compare(run_variant(model_dir, name, args), ref, args.layers)
                print(f"{name}: overall {results[name]['overall']:.2e}", flush=True)

    print(
        f"\nfirst-step LoRA gradients vs fp32, {args.layers} layers, hidden {args.hidden}, lora_B {args.lora_b}"
        f", weights std {0.02 * (args.std_as_hidden / args.hidden) ** 0.5 if args.std_as_hidden else 0.02:.4f}"
    )
    headers = ["layer", *results]
    rows = [
        [str(i), *(bc.fmt(r["per_layer"][i], 1, sci=True) for r in results.values())]
        for i in range(args.layers)
    ]
    rows.append(["overall", *(bc.fmt(r["overall"], 1, sci=True) for r in results.values())])
    rows.append(["first+last B", *(bc.fmt(r["first_last_lora_b"], 1, sci=True) for r in results.values())])
    rows.append(["worst tensor", *(bc.fmt(r["worst_error"], 2) for r in results.values())])
    rows.append(["its norm/median", *(bc.fmt(r["worst_norm_over_median"], 2) for r in results.values())])
    rows.append(["loss", *(f"{r['loss']:.5f}" for r in results.values())])
    bc.print_table(headers, rows)
    print("\nhidden states after each layer vs fp32 (relative error)")
    step = max(1, args.layers // 8)
    shown = (
        [*range(0, args.layers, step), args.layers - 1]
        if (args.layers - 1) % step
        else list(range(0, args.layers, step))
    )
    bc.print_table(
        headers,
        [[str(i), *(bc.fmt(r["hidden_per_layer"][i], 1, sci=True) for r in results.values())] for i in shown],
    )
    print(f"fp32 loss {ref['loss']:.5f}")
    bc.write_json(
        args.out,
        {
            "benchmark": "fp8_grad_depth",
            "args": {k: str(v) for k, v in vars(args).items()},
            "fp32_loss": ref["loss"],
            "results": results,
            "environment": bc.environment(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
