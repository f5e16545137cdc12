"""Peak RAM of `forumtune merge` on a Mistral-7B-shaped model with random weights, on the CPU.

Writes a random bf16 base (14.5 GB, in 1 GiB shards, never whole in memory) and a random LoRA
(r=16, all 7 projections of every layer), then runs merge_adapter in a child process while sampling
its /proc status. Reports the peak resident set (VmHWM, what the kernel charges the process),
split into anonymous memory (what the merge allocates) and file pages (the memory-mapped shards,
which the kernel can drop under pressure). The big files are deleted afterwards unless --keep.

    .venv/bin/python benchmarks/merge_memory.py                 # Mistral-7B shape (~30 GB of disk)
    .venv/bin/python benchmarks/merge_memory.py --shape tiny    # seconds, to check the script
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import GIB, PRESETS, Shape, ensure_model, write_json

PROJECTIONS = {
    "self_attn.q_proj": ("hidden", "hidden"),
    "self_attn.k_proj": ("hidden", "kv"),
    "self_attn.v_proj": ("hidden", "kv"),
    "self_attn.o_proj": ("hidden", "hidden"),
    "mlp.gate_proj": ("hidden", "intermediate"),
    "mlp.up_proj": ("hidden", "intermediate"),
    "mlp.down_proj": ("intermediate", "hidden"),
}
MERGE_WORKER = (
    "import sys; from pathlib import Path; from forumtune.export.merge import merge_adapter; "
    "merge_adapter(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), dtype='bfloat16', max_shard_size='2GB')"
)


def write_random_adapter(adapter_dir: Path, shape: Shape, rank: int = 16, seed: int = 1) -> int:
    """A PEFT-format LoRA of `rank` on every projection, with small random A and B (B non-zero)."""
    sizes = {
        "hidden": shape.hidden,
        "kv": shape.kv_heads * (shape.hidden // shape.heads),
        "intermediate": shape.intermediate,
    }
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(shape.layers):
        for module, (fan_in, fan_out) in PROJECTIONS.items():
            prefix = f"base_model.model.model.layers.{layer}.{module}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(rank, sizes[fan_in], generator=generator) * 0.01
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(sizes[fan_out], rank, generator=generator) * 0.01
    adapter_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, adapter_dir / "adapter_model.safetensors", metadata={"format": "pt"})
    config = {
        "peft_type": "LORA",
        "r": rank,
        "lora_alpha": 2 * rank,
        "target_modules": sorted(module.split(".")[1] for module in PROJECTIONS),
        "use_dora": False,
        "use_rslora": False,
    }
    (adapter_dir / "adapter_config.json").write_text(json.dumps(config))
    return sum(tensor.numel() for tensor in tensors.values())


def proc_status_kib(pid: int) -> dict[str, int]:
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                values[key] = int(rest.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return values


def run_merge_measured(base_dir: Path, adapter_dir: Path, out_dir: Path) -> dict[str, Any]:
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", MERGE_WORKER, str(base_dir), str(adapter_dir), str(out_dir)]
    )
    peaks = {"VmHWM": 0, "RssAnon": 0, "RssFile": 0}

    def sample() -> None:
        while child.poll() is None:
            for key, value in proc_status_kib(child.pid).items():
                if key in peaks:
                    peaks[key] = max(peaks[key], value)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    returncode = child.wait()
    sampler.join()
    if returncode != 0:
        raise SystemExit(f"merge failed with exit code {returncode}")
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_gib": round(peaks["VmHWM"] / 2**20, 2),
        "peak_anon_gib": round(peaks["RssAnon"] / 2**20, 2),
        "peak_file_backed_gib": round(peaks["RssFile"] / 2**20, 2),
        "merged_bytes": sum(path.stat().st_size for path in out_dir.glob("*.safetensors")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", choices=sorted(PRESETS), default="mistral-7b")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/forumtune-merge-bench"))
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "merge-memory.json")
    parser.add_argument("--keep", action="store_true", help="keep the random base, adapter and merged model")
    args = parser.parse_args()
    shape = PRESETS[args.shape]
    base_dir, adapter_dir, out_dir = args.workdir / "base", args.workdir / "adapter", args.workdir / "merged"
    try:
        written = ensure_model(base_dir, shape, shard_bytes=GIB)
        lora_parameters = write_random_adapter(adapter_dir, shape)
        result = run_merge_measured(base_dir, adapter_dir, out_dir)
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
    payload = {
        "shape": shape.__dict__,
        "base_bytes": written.get("bytes"),
        "lora_parameters": lora_parameters,
        "torch": torch.__version__,
        **result,
    }
    print(f"{'shape':<12} {'base GB':>8} {'merge s':>8} {'peak RSS GiB':>13} {'anon GiB':>9} {'mmap GiB':>9}")
    print(
        f"{shape.name:<12} {(written.get('bytes') or 0) / 1e9:>8.1f} {result['seconds']:>8.1f} "
        f"{result['peak_rss_gib']:>13.2f} {result['peak_anon_gib']:>9.2f} {result['peak_file_backed_gib']:>9.2f}"
    )
    write_json(args.json, payload)


if __name__ == "__main__":
    main()
