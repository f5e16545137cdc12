#!/usr/bin/env python3
"""bitsandbytes' two CPU layouts for NF4 weights (forumtune/cpu_layout.py): the trainable one (dequantize the
whole weight, then matmul in the compute dtype) against the packed one (AVX512-BF16 kernel on the 4-bit
codes, bf16 products), per layer on Mistral-7B's projection shapes and for whole-model generation.

Per layer: milliseconds per call at 1 token (decoding) and 64 tokens (a prompt), fp32 and bf16 compute,
and the relative difference of the outputs. Generation: new tokens per second of `model.generate`, greedy,
on a random Mistral-architecture model of --hidden/--layers loaded as forumtune loads it (NF4, double
quantization). Needs a CPU with AVX512-BF16 (bitsandbytes has no packed kernel elsewhere). Prints a table
and writes JSON.

  python benchmarks/cpu_layouts.py --threads 1 --out benchmarks/results/cpu-layouts.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common as bc

MISTRAL_7B_PROJECTIONS = {
    "q_proj / o_proj": (4096, 4096),
    "k_proj / v_proj": (1024, 4096),
    "gate_proj / up_proj": (14336, 4096),
    "down_proj": (4096, 14336),
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def nf4_layer(rows: int, inputs: int, dtype: torch.dtype, packed: bool) -> torch.nn.Module:
    import bitsandbytes as bnb

    torch.manual_seed(0)
    layer = bnb.nn.Linear4bit(
        inputs, rows, bias=False, compute_dtype=dtype, quant_type="nf4", compress_statistics=True
    )
    layer.weight = bnb.nn.Params4bit(
        torch.randn(rows, inputs) * 0.02,
        requires_grad=False,
        quant_type="nf4",
        compress_statistics=True,
        module=layer,
    )
    layer = layer.to("cpu").eval()  # quantizes
    layer.support_avx512bf16_for_cpu = packed
    return layer


def ms_per_call(fn, repeats: int) -> float:
    fn()  # the packed layout converts on its first call
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


@torch.no_grad()
def layer_rows(repeats: int) -> list[dict[str, Any]]:
    results = []
    for name, (rows, inputs) in MISTRAL_7B_PROJECTIONS.items():
        for dtype_name, dtype in DTYPES.items():
            for tokens in (1, 64):
                x = torch.randn(tokens, inputs, dtype=dtype)
                trainable, packed = (
                    nf4_layer(rows, inputs, dtype, False),
                    nf4_layer(rows, inputs, dtype, True),
                )
                reference, fast = trainable(x).float(), packed(x).float()
                results.append(
                    {
                        "layer": name,
                        "shape": [rows, inputs],
                        "dtype": dtype_name,
                        "tokens": tokens,
                        "trainable_ms": ms_per_call(lambda layer=trainable, x=x: layer(x), repeats),
                        "packed_ms": ms_per_call(lambda layer=packed, x=x: layer(x), repeats),
                        "relative_difference": float((fast - reference).norm() / reference.norm()),
                    }
                )
                results[-1]["speedup"] = results[-1]["trainable_ms"] / results[-1]["packed_ms"]
    return results


@torch.no_grad()
def generation_rows(model_dir: Path, new_tokens: int, prompt_tokens: int) -> list[dict[str, Any]]:
    from forumtune import cpu_layout
    from forumtune.config import ModelConfig
    from forumtune.models import load_base_model

    results = []
    for dtype_name in DTYPES:
        for layout in ("trainable", "packed"):
            model = load_base_model(
                ModelConfig(base=str(model_dir), compute_dtype=dtype_name), torch.device("cpu")
            )
            model.eval()
            if layout == "packed":
                assert cpu_layout.use_packed_layout_for_generation(model), "no packed kernel on this CPU"
            prompt = torch.randint(
                bc.FIRST_ORDINARY_ID, 500, (1, prompt_tokens), generator=torch.Generator().manual_seed(0)
            )
            options = {
                "do_sample": False,
                "max_new_tokens": new_tokens,
                "min_new_tokens": new_tokens,
                "pad_token_id": bc.PAD_ID,
            }
            model.generate(prompt, **{**options, "max_new_tokens": 2, "min_new_tokens": 2})  # packs, warms up
            started = time.perf_counter()
            output = model.generate(prompt, **options)
            seconds = time.perf_counter() - started
            results.append(
                {
                    "dtype": dtype_name,
                    "layout": layout,
                    "seconds": seconds,
                    "new_tokens_per_s": new_tokens / seconds,
                    "tokens": output[0, prompt_tokens:].tolist(),
                }
            )
    return results


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--model-root", type=Path, default=Path("/tmp/forumtune-bench"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from forumtune import cpu_layout

    if not cpu_layout.packed_kernel_available():
        sys.exit("this CPU has no AVX512-BF16: bitsandbytes has no packed layout here, nothing to compare")

    layers = layer_rows(args.repeats)
    bc.print_table(
        ["layer", "dtype", "tokens", "trainable ms", "packed ms", "speed-up", "rel. diff"],
        [
            [
                r["layer"],
                r["dtype"],
                r["tokens"],
                bc.fmt(r["trainable_ms"], 2),
                bc.fmt(r["packed_ms"], 2),
                f"{r['speedup']:.1f}x",
                f"{r['relative_difference']:.1e}",
            ]
            for r in layers
        ],
    )
    shape = bc.Shape(
        f"mistral-h{args.hidden}-l{args.layers}",
        vocab=32000,
        hidden=args.hidden,
        intermediate=args.hidden * 11 // 4 // 64 * 64,
        layers=args.layers,
        heads=args.hidden // 128,
        kv_heads=max(1, args.hidden // 512),
    )
    model_dir = args.model_root / shape.name
    bc.ensure_model(model_dir, shape)
    generation = generation_rows(model_dir, args.new_tokens, args.prompt_tokens)
    bc.print_table(
        ["model", "dtype", "layout", "new tokens/s"],
        [[shape.name, r["dtype"], r["layout"], bc.fmt(r["new_tokens_per_s"], 1)] for r in generation],
    )
    bc.write_json(
        args.out,
        {
            "environment": {**bc.environment(), "cpu": cpu_name(), "threads": args.threads},
            "layers": layers,
            "generation": {
                "shape": shape.__dict__,
                "prompt_tokens": args.prompt_tokens,
                "new_tokens": args.new_tokens,
                "runs": generation,
            },
        },
    )


if __name__ == "__main__":
    main()
