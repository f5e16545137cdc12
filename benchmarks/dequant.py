#!/usr/bin/env python3
"""NF4 dequantization on the GPU: bitsandbytes' two kernels (as forumtune calls them, `lora_linear.
dequantize_weight`) against forumtune's single Triton kernel (`kernels.nf4_dequant`), on the projection
shapes of Mistral-7B, double-quantized as QLoRA stores them.

Each kernel is captured in a CUDA graph of `--calls` calls and replayed, as the training step replays
it, so the time is GPU time per call without launch overhead. Reported: microseconds per call, effective
bandwidth (packed bytes and scales read + dense bytes written), the speed-up, and whether the two
outputs are bit-identical. Prints a table and writes JSON.

  python benchmarks/dequant.py --out dequant.json
  python benchmarks/dequant.py --rows 8,16,32,64 --warps 2,4,8 --out dequant-tuning.json
  python benchmarks/dequant.py --model-dir /tmp/forumtune-bench/mistral-7b-shape   # + every weight of a model

With --model-dir, every 4-bit weight of that checkpoint (loaded as QLoRA loads it) is also dequantized both
ways and the elements that differ are counted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common as bc

MISTRAL_7B_PROJECTIONS = {
    "q_proj / o_proj": (4096, 4096),
    "k_proj / v_proj": (1024, 4096),
    "gate_proj / up_proj": (14336, 4096),
    "down_proj": (4096, 14336),
}


def time_per_call(fn, calls: int, repeats: int) -> float:
    """Microseconds per call, median over `repeats` replays of a graph holding `calls` calls."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000 / calls)
    return sorted(times)[len(times) // 2]


def compare_model(model_dir: str) -> dict:
    """Both dequantizations of every 4-bit weight of a checkpoint: modules and elements that differ."""
    from bitsandbytes.nn import Linear4bit
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from forumtune.kernels import nf4_dequant
    from forumtune.kernels.lora_linear import dequantize_weight

    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, quantization_config=quant, dtype=torch.bfloat16, device_map={"": 0}
    )
    modules, elements, differing = 0, 0, {}
    for name, module in model.named_modules():
        if isinstance(module, Linear4bit):
            state = module.weight.quant_state
            reference = dequantize_weight(module.weight, state, torch.bfloat16)
            count = int((nf4_dequant.dequantize_nf4(module.weight, state, torch.bfloat16) != reference).sum())
            modules, elements = modules + 1, elements + reference.numel()
            if count:
                differing[name] = count
    summary = {
        "model_dir": model_dir,
        "modules": modules,
        "elements": elements,
        "modules_differing": len(differing),
        "elements_differing": sum(differing.values()),
        "differing": differing,
    }
    print(
        f"{model_dir}: {modules} 4-bit weights, {elements:,} elements; differing: {len(differing)} weights, "
        f"{sum(differing.values())} elements",
        flush=True,
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--rows", default="32", help="quantization blocks per Triton program, comma-separated"
    )
    parser.add_argument("--warps", default="4", help="Triton num_warps values, comma-separated")
    parser.add_argument("--model-dir", help="also compare the two on every 4-bit weight of this checkpoint")
    parser.add_argument("--out", default="dequant.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/dequant.py needs a CUDA GPU")
    import bitsandbytes.functional as F

    from forumtune.kernels import nf4_dequant
    from forumtune.kernels.lora_linear import dequantize_weight

    torch.manual_seed(0)
    rows_options = [int(r) for r in args.rows.split(",")]
    warps_options = [int(w) for w in args.warps.split(",")]
    results = []
    for name, shape in MISTRAL_7B_PROJECTIONS.items():
        dense = (torch.randn(shape, device="cuda") * 0.02).to(torch.bfloat16)
        packed, state = F.quantize_4bit(dense, blocksize=64, quant_type="nf4", compress_statistics=True)
        reference = dequantize_weight(packed, state, torch.bfloat16)
        bnb_us = time_per_call(
            lambda p=packed, s=state: dequantize_weight(p, s, torch.bfloat16), args.calls, args.repeats
        )
        moved = packed.numel() + state.absmax.numel() + dense.numel() * 2  # bytes read + written
        for rows in rows_options:
            for warps in warps_options:
                out = nf4_dequant.dequantize_nf4(packed, state, torch.bfloat16, rows=rows, num_warps=warps)
                identical = bool(torch.equal(out, reference))
                triton_us = time_per_call(
                    lambda p=packed, s=state, r=rows, w=warps: nf4_dequant.dequantize_nf4(
                        p, s, torch.bfloat16, rows=r, num_warps=w
                    ),
                    args.calls,
                    args.repeats,
                )
                results.append(
                    {
                        "projection": name,
                        "shape": list(shape),
                        "rows": rows,
                        "num_warps": warps,
                        "bitsandbytes_us": round(bnb_us, 2),
                        "triton_us": round(triton_us, 2),
                        "speedup": round(bnb_us / triton_us, 3),
                        "bit_identical": identical,
                        "bitsandbytes_gb_s": round(moved / bnb_us / 1e3, 1),
                        "triton_gb_s": round(moved / triton_us / 1e3, 1),
                    }
                )
                print(
                    f"{name:20} {shape!s:14} rows {rows:3} warps {warps}: bitsandbytes {bnb_us:8.1f} us "
                    f"({moved / bnb_us / 1e3:6.0f} GB/s)  triton {triton_us:8.1f} us ({moved / triton_us / 1e3:6.0f} "
                    f"GB/s)  x{bnb_us / triton_us:.2f}  identical {identical}",
                    flush=True,
                )
    # all 7 projections of one decoder layer dequantized once (a training step does it about 3 times)
    per_layer = {}
    for entry in results:
        key = (entry["rows"], entry["num_warps"])
        count = 2 if "/" in entry["projection"] else 1
        totals = per_layer.setdefault(key, [0.0, 0.0])
        totals[0] += count * entry["bitsandbytes_us"]
        totals[1] += count * entry["triton_us"]
    summary = [
        {
            "rows": r,
            "num_warps": w,
            "layer_bitsandbytes_us": round(b, 1),
            "layer_triton_us": round(t, 1),
            "speedup": round(b / t, 3),
        }
        for (r, w), (b, t) in per_layer.items()
    ]
    for line in summary:
        print(
            f"one layer's 7 projections, rows {line['rows']} warps {line['num_warps']}: bitsandbytes "
            f"{line['layer_bitsandbytes_us']} us, triton {line['layer_triton_us']} us, x{line['speedup']}"
        )
    payload = {
        "benchmark": "dequant",
        "env": bc.environment(),
        "calls_per_graph": args.calls,
        "results": results,
        "per_layer": summary,
        "model": compare_model(args.model_dir) if args.model_dir else None,
    }
    bc.write_json(Path(args.out), payload)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
