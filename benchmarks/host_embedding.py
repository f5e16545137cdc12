#!/usr/bin/env python3
"""What `train.embeddings_on_host` costs per micro-batch: the host gather of a batch's embedding rows
(`HostEmbedding.gather`, which training runs while the GPU still works on the step before) and the copy of
those rows to the device when the forward starts (`HostEmbedding.forward`, queued on the compute stream),
against the lookup of the same rows in a table on the device. Tables of the Mistral-7B, Llama-3.1-8B and
Qwen2.5-7B shapes in bf16, random ids; medians of --repeats timings after warm-up. Prints a table and
writes JSON.

  python benchmarks/host_embedding.py --out host-embedding.json                 # on a GPU
  python benchmarks/host_embedding.py --tables mistral-7b --repeats 15          # the host side on a CPU
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common as bc

from forumtune.train.host_embeddings import HostEmbedding

TABLES = {"mistral-7b": (32000, 4096), "llama-3.1-8b": (128256, 4096), "qwen2.5-7b": (152064, 3584)}


def median_ms(run: Callable[[], object], repeats: int, device: torch.device) -> float:
    for _ in range(3):
        run()
    times = []
    for _ in range(repeats):
        bc.synchronize()
        started = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def measure(name: str, tokens: tuple[int, int], device: torch.device, repeats: int) -> dict[str, object]:
    vocab, hidden = TABLES[name]
    torch.manual_seed(0)
    table = nn.Embedding(vocab, hidden, dtype=torch.bfloat16).requires_grad_(False)
    ids = torch.randint(0, vocab, tokens)
    host = HostEmbedding(table, device)  # the table stays where nn.Embedding made it: on the host
    staged = ids.to(device)
    host.stage({"input_ids": ids}, {"input_ids": staged})
    result: dict[str, object] = {
        "table": name,
        "batch": tokens[0],
        "seq": tokens[1],
        "table_mib": vocab * hidden * 2 / 2**20,
        "rows_mib": ids.numel() * hidden * 2 / 2**20,
        "gather_ms": median_ms(lambda: host.gather(ids), repeats, torch.device("cpu")),
        "copy_ms": median_ms(lambda: host.forward(staged), repeats, device),
        "waits": host.waits,
    }
    if device.type == "cuda":
        on_device = nn.Embedding(vocab, hidden, dtype=torch.bfloat16, device=device).requires_grad_(False)
        result["device_lookup_ms"] = median_ms(lambda: on_device(staged), repeats, device)
        assert torch.equal(host.forward(staged).cpu(), table(ids))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tables", default=",".join(TABLES), help=f"from {', '.join(TABLES)}")
    parser.add_argument("--shapes", default="2x2048,1x16384")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    runs = [
        measure(name, bc.parse_shape_arg(shape), device, args.repeats)
        for name in args.tables.split(",")
        for shape in args.shapes.split(",")
    ]
    bc.print_table(
        [
            "table",
            "tokens",
            "table MiB",
            "rows MiB",
            "host gather ms",
            "copy to device ms",
            "device lookup ms",
        ],
        [
            [
                r["table"],
                f"{r['batch']}x{r['seq']}",
                bc.fmt(r["table_mib"]),
                bc.fmt(r["rows_mib"]),
                bc.fmt(r["gather_ms"], 2),
                bc.fmt(r["copy_ms"], 2),
                bc.fmt(r.get("device_lookup_ms"), 2),
            ]
            for r in runs
        ],
    )
    bc.write_json(
        args.out,
        {
            "benchmark": "host_embedding",
            "threads": torch.get_num_threads(),
            "env": bc.environment(),
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
