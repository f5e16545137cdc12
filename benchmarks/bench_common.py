"""Shared pieces of the benchmarks: a random-weight model of a given shape, a placeholder tokenizer,
synthetic datasets in forumtune's format, forumtune configs, environment facts, and subprocess runs.

Nothing here is a test. The benchmarks import it from their own folder (`python benchmarks/X.py`).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GIB = 2**30
MIB = 2**20


@dataclass(frozen=True)
class Shape:
    """A decoder-only model shape of one architecture family (`family`: a key of FAMILIES)."""

    name: str
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    family: str = "mistral"
    head_dim: int | None = None  # None: hidden // heads
    tied: bool = False  # the output head shares the embedding matrix

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def attn_implementation(self) -> str:
        """Gemma-2 soft-caps its attention scores, which SDPA cannot do: transformers refuses SDPA for it
        and its own (eager) attention runs, for every stack, as it would for a user."""
        return "eager" if self.family == "gemma2" else "sdpa"


PRESETS = {
    # Mistral-7B-v0.2 / Instruct-v0.2: no sliding window, rope theta 1e6.
    "mistral-7b": Shape(
        "mistral-7b", vocab=32000, hidden=4096, intermediate=14336, layers=32, heads=32, kv_heads=8
    ),
    # Llama-3.1-8B: Mistral's layers with a 128,256-token vocabulary (its embedding and head are 1 GiB
    # each in bf16, and the logits 4x Mistral's), rope theta 5e5 with llama3 scaling.
    "llama-3.1-8b": Shape(
        "llama-3.1-8b",
        vocab=128256,
        hidden=4096,
        intermediate=14336,
        layers=32,
        heads=32,
        kv_heads=8,
        family="llama3",
    ),
    # Qwen2.5-7B: biases on q/k/v, a wide MLP, 4 KV heads, a 152,064-token vocabulary.
    "qwen2.5-7b": Shape(
        "qwen2.5-7b",
        vocab=152064,
        hidden=3584,
        intermediate=18944,
        layers=28,
        heads=28,
        kv_heads=4,
        family="qwen2",
    ),
    # Gemma-2-9B: head_dim 256 (q is 4096 wide on a 3584 residual), GeGLU, four norms per layer of the
    # (1 + w) kind, soft-capped attention scores and logits, alternating 4096-token sliding-window layers,
    # a 256,000-token vocabulary tied to the output head.
    "gemma-2-9b": Shape(
        "gemma-2-9b",
        vocab=256000,
        hidden=3584,
        intermediate=14336,
        layers=42,
        heads=16,
        kv_heads=8,
        family="gemma2",
        head_dim=256,
        tied=True,
    ),
    # For checking the scripts' logic on a CPU in seconds, one per family.
    "tiny": Shape("tiny", vocab=512, hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2),
    "tiny-llama3": Shape(
        "tiny-llama3", vocab=512, hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2, family="llama3"
    ),
    "tiny-qwen2": Shape(
        "tiny-qwen2", vocab=512, hidden=64, intermediate=160, layers=2, heads=4, kv_heads=2, family="qwen2"
    ),
    "tiny-gemma2": Shape(
        "tiny-gemma2",
        vocab=512,
        hidden=64,
        intermediate=128,
        layers=2,
        heads=4,
        kv_heads=2,
        family="gemma2",
        head_dim=32,
        tied=True,
    ),
}

PAD_ID = 3
LORA_R = 16  # the rank of every benchmark's LoRA (forumtune's configs written here, and the minimal loop's)
FIRST_ORDINARY_ID = 4
# --embeddings-on-host of the training benchmarks, as train.embeddings_on_host takes it
EMBEDDINGS_ON_HOST: dict[str, str | bool] = {"auto": "auto", "on": True, "off": False}
MODEL_MARKER = "bench_model.json"


def parse_shape_arg(text: str) -> tuple[int, int]:
    """'2x2048' -> (2, 2048): micro-batch × sequence length."""
    batch, _, seq = text.lower().partition("x")
    return int(batch), int(seq)


# --------------------------------------------------------------------------------------------- model


def model_config(shape: Shape):
    """The transformers config of `shape`'s family, with the real model's settings besides the shape."""
    return FAMILIES[shape.family](shape)


def _common(shape: Shape) -> dict[str, Any]:
    return {
        "vocab_size": shape.vocab,
        "hidden_size": shape.hidden,
        "intermediate_size": shape.intermediate,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads,
        "head_dim": shape.head_size,
        "tie_word_embeddings": shape.tied,
        "initializer_range": 0.02,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": PAD_ID,
    }


def mistral_config(shape: Shape):
    from transformers import MistralConfig

    return MistralConfig(
        **_common(shape),
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        sliding_window=None,
        rms_norm_eps=1e-5,
    )


def llama3_config(shape: Shape):
    from transformers import LlamaConfig

    return LlamaConfig(
        **_common(shape),
        max_position_embeddings=131072,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500_000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        rms_norm_eps=1e-5,
    )


def qwen2_config(shape: Shape):
    from transformers import Qwen2Config

    return Qwen2Config(  # Qwen2's attention always has biases on q, k and v
        **_common(shape),
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        use_sliding_window=False,
        rms_norm_eps=1e-6,
    )


def gemma2_config(shape: Shape):
    from transformers import Gemma2Config

    return Gemma2Config(
        **_common(shape),
        max_position_embeddings=8192,
        rope_theta=10_000.0,
        rms_norm_eps=1e-6,
        hidden_activation="gelu_pytorch_tanh",
        query_pre_attn_scalar=shape.head_size,
        sliding_window=4096,
        final_logit_softcapping=30.0,
        attn_logit_softcapping=50.0,
    )


FAMILIES = {
    "mistral": mistral_config,
    "llama3": llama3_config,
    "qwen2": qwen2_config,
    "gemma2": gemma2_config,
}


def save_placeholder_tokenizer(target: Path, vocab_size: int) -> None:
    """A byte-free BPE tokenizer of exactly `vocab_size` entries: <unk> <s> </s> <pad>, single
    characters, then filler pieces. Enough for libraries that insist on a tokenizer; never used to encode
    the benchmark data, which is random token ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    pieces = specials + ["▁"] + [chr(c) for c in range(33, 127)]
    pieces = pieces[:vocab_size]
    vocab = {piece: index for index, piece in enumerate(pieces)}
    filler = 0
    while len(vocab) < vocab_size:
        vocab[f"▁w{filler}"] = len(vocab)
        filler += 1
    model = models.BPE(vocab=vocab, merges=[], unk_token="<unk>")
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_max_length=32768,
    )
    wrapped.save_pretrained(str(target))


def ensure_model(
    model_dir: Path, shape: Shape, *, seed: int = 0, shard_bytes: int = 4 * GIB
) -> dict[str, Any]:
    """A bf16 checkpoint of `shape` with random weights (normal, std 0.02; biases too; norms at identity)
    in `model_dir`, written straight to safetensors shards without building the model; reused when already
    there. Another shape already in `model_dir` is replaced: its shards are deleted before the new ones are
    written, so one directory holds one model at a time (the 7-9B shapes are 14.5-18.5 GB each). Peak host
    memory is one shard; a tied output head is not written twice."""
    marker = model_dir / MODEL_MARKER
    wanted = {"shape": shape.__dict__, "seed": seed, "version": 2}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return {"reused": True, "seconds": 0.0}
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    started = time.perf_counter()
    config = model_config(shape)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    names = [
        (name, tuple(p.shape))
        for name, p in skeleton.state_dict().items()
        if not (shape.tied and name == "lm_head.weight")
    ]
    total = sum(2 * int(torch.Size(dims).numel()) for _, dims in names)
    model_dir.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    for old in model_dir.glob("*.safetensors"):
        old.unlink()
    check_disk_space(model_dir, total)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    generator = torch.Generator(device=device).manual_seed(seed)
    groups: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    sizes = [0]
    for name, dims in names:
        nbytes = 2 * int(torch.Size(dims).numel())
        if sizes[-1] and sizes[-1] + nbytes > shard_bytes:
            groups.append([])
            sizes.append(0)
        groups[-1].append((name, dims))
        sizes[-1] += nbytes
    weight_map = {}
    for index, group in enumerate(groups):
        filename = f"model-{index + 1:05d}-of-{len(groups):05d}.safetensors"
        shard = {name: random_tensor(name, dims, shape, generator, device) for name, dims in group}
        save_file(shard, str(model_dir / filename), metadata={"format": "pt"})
        weight_map.update({name: filename for name in shard})
        del shard
    (model_dir / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1)
    )
    config.save_pretrained(str(model_dir))
    save_placeholder_tokenizer(model_dir, shape.vocab)
    marker.write_text(json.dumps(wanted))
    return {"reused": False, "seconds": round(time.perf_counter() - started, 1), "bytes": total}


def random_tensor(name: str, dims: tuple[int, ...], shape: Shape, generator, device: str):
    """One bf16 weight on the CPU: a norm at identity (1, or 0 for Gemma's (1 + w) norms), anything else
    normal with std 0.02 (q/k/v biases included, so that a path that dropped them would show)."""
    import torch

    if len(dims) == 1 and "norm" in name:
        fill = torch.zeros if shape.family == "gemma2" else torch.ones
        return fill(dims, dtype=torch.bfloat16)
    tensor = torch.empty(dims, dtype=torch.bfloat16, device=device).normal_(0.0, 0.02, generator=generator)
    return tensor.cpu()


def check_disk_space(model_dir: Path, needed: int) -> None:
    """Fail before writing when the model will not fit the disk, naming the benchmark models that could go."""
    free = shutil.disk_usage(model_dir).free
    if free >= needed + GIB:  # a GiB to spare for the tokenizer, datasets and logs
        return
    others = [
        f"{m.parent} ({sum(f.stat().st_size for f in m.parent.glob('*.safetensors')) / 1e9:.1f} GB)"
        for m in model_dir.parent.glob(f"*/{MODEL_MARKER}")
        if m.parent != model_dir
    ]
    raise SystemExit(
        f"{model_dir}: the model needs {needed / 1e9:.1f} GB and the disk has {free / 1e9:.1f} GB free. "
        f"Delete a benchmark model ({', '.join(others) or 'none found beside it'}) or pass the same "
        "--model-dir for every shape: each one replaces the last."
    )


# ------------------------------------------------------------------------------------------ compute


def step_flops(shape: Shape, seq: int, lora_r: int, *, skips_down_proj: bool = False):
    """forumtune.train.compute's FLOPs per token of a LoRA step on `shape` at `seq` tokens per row (one
    definition for the benchmarks and `forumtune plan`). `skips_down_proj`: the stack's recompute leaves out
    the down projection (forumtune's fast path), where the architecture allows it."""
    from forumtune.train.compute import ENDS_IN_DOWN_PROJ
    from forumtune.train.compute import step_flops as count
    from forumtune.train.plan import model_shape

    config = model_config(shape)
    skip = skips_down_proj and config.model_type in ENDS_IN_DOWN_PROJ
    return count(model_shape(config), seq, lora_r, checkpointing=True, skip_down_proj=skip)


def utilisation(
    tokens_per_s: float | None, flops, gpu_name: str | None, *, reference_forwards: int = 0
) -> dict[str, Any]:
    """MFU (model FLOPs: forward + backward, train/compute.py's convention) and HFU (with the recompute) of
    a measured rate against the GPU's dense bf16 peak, found from its device name; None where unknown.
    `reference_forwards`: extra no-grad forward passes per token that the objective needs (DPO's reference
    model: 1), counted as model work."""
    from forumtune.train.compute import detect_gpu

    gpu = detect_gpu(gpu_name)
    model = flops.model + reference_forwards * flops.forward
    peak = gpu.bf16_tflops * 1e12 if gpu else None
    known = bool(tokens_per_s and peak)
    return {
        "mfu": tokens_per_s * model / peak if known else None,
        "hfu": tokens_per_s * (model + flops.recompute) / peak if known else None,
        "gpu_key": gpu.key if gpu else None,
        "peak_tflops": gpu.bf16_tflops if gpu else None,
        "flops_per_token": {
            "forward": flops.forward,
            "backward": flops.backward,
            "recompute": flops.recompute,
            "reference_forwards": reference_forwards,
            "model": model,
        },
    }


def fmt_pct(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.1f}%"


# ---------------------------------------------------------------------------------------------- data


def write_dataset(dataset_dir: Path, vocab: int, seq_len: int, count: int, seed: int = 1234) -> Path:
    """forumtune's dataset format: train.jsonl (random token ids, labels = input_ids) and an empty
    eval.jsonl (so the trainer runs no evaluation)."""
    dataset_dir.mkdir(parents=True, exist_ok=True)
    marker = dataset_dir / "spec.json"
    wanted = {"vocab": vocab, "seq_len": seq_len, "count": count, "seed": seed}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return dataset_dir
    rng = random.Random(seed)
    with (dataset_dir / "train.jsonl").open("w") as handle:
        for thread_id in range(count):
            ids = [rng.randrange(FIRST_ORDINARY_ID, vocab) for _ in range(seq_len)]
            handle.write(
                json.dumps(
                    {
                        "thread_id": thread_id,
                        "title": f"synthetic {thread_id}",
                        "messages": [],
                        "input_ids": ids,
                        "labels": ids,
                    }
                )
                + "\n"
            )
    (dataset_dir / "eval.jsonl").write_text("")
    marker.write_text(json.dumps(wanted))
    return dataset_dir


def read_records(dataset_dir: Path) -> list[dict[str, Any]]:
    with (dataset_dir / "train.jsonl").open() as handle:
        return [json.loads(line) for line in handle if line.strip()]


def batch_order(count: int, batch: int, seed: int, steps: int) -> list[list[int]]:
    """The record indices forumtune's trainer takes for its first `steps` micro-batches."""
    from forumtune.train.batches import micro_batches

    iterator = micro_batches(count, batch, seed)
    return [next(iterator) for _ in range(steps)]


def write_forumtune_config(
    path: Path,
    *,
    model_dir: Path,
    runs_dir: Path,
    batch: int,
    seq_len: int,
    steps: int,
    gradient_checkpointing: bool | str = True,
    compute_dtype: str = "bfloat16",
    device: str = "cuda",
    seed: int = 42,
    learning_rate: float = 2e-4,
    fast_path: bool = True,
    train_extra: dict[str, Any] | None = None,
    lora_dropout: float = 0.0,
    attn_implementation: str = "sdpa",
) -> Path:
    import yaml

    raw = {
        "name": "bench",
        "seed": seed,
        "runs_dir": str(runs_dir),
        "scrape": {"url": "http://127.0.0.1/unused"},
        "build": {"max_seq_len": seq_len, "chat_template": "mistral"},
        "model": {
            "base": str(model_dir),
            "load_in_4bit": True,
            "quant_type": "nf4",
            "double_quant": True,
            "compute_dtype": compute_dtype,
            "attn_implementation": attn_implementation,
        },
        "lora": {"r": LORA_R, "alpha": 32, "dropout": lora_dropout, "target_modules": "all-linear"},
        "train": {
            "max_steps": steps,
            "micro_batch_size": batch,
            "grad_accum_steps": 1,
            "learning_rate": learning_rate,
            "lr_scheduler": "constant",
            "warmup_steps": 0,
            "optimizer": "paged_adamw_8bit",
            "gradient_checkpointing": gradient_checkpointing,
            "eval_every": 1_000_000,
            "save_every": 1_000_000,
            "device": device,
            "fast_path": fast_path,
            **(train_extra or {}),
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


# ----------------------------------------------------------------------------------------------- GPU


def apply_memory_cap(cap_gib: float | None) -> dict[str, Any]:
    """Cap PyTorch's allocator at cap_gib (an 8 GB card stand-in); returns what was set."""
    import torch

    if not cap_gib or not torch.cuda.is_available():
        return {}
    total = torch.cuda.get_device_properties(0).total_memory
    fraction = min(1.0, cap_gib * GIB / total)
    torch.cuda.set_per_process_memory_fraction(fraction, 0)
    return {"cap_gib": cap_gib, "fraction": round(fraction, 5)}


def cuda_memory() -> dict[str, float]:
    """The allocator's current and peak allocation, the device's used memory (all processes, managed
    memory of paged optimizers included), and once `start_device_use` ran, this process's whole use of the
    card (`process_device_mib`), in MiB. Each call is a sample of the process's peak."""
    import torch

    if not torch.cuda.is_available():
        return {}
    free, total = torch.cuda.mem_get_info()
    memory = {
        "allocated_mib": torch.cuda.memory_allocated() / MIB,
        "max_allocated_mib": torch.cuda.max_memory_allocated() / MIB,
        "reserved_mib": torch.cuda.memory_reserved() / MIB,
        "max_reserved_mib": torch.cuda.max_memory_reserved() / MIB,
        "device_used_mib": (total - free) / MIB,
    }
    if DEVICE_USE is not None:
        memory["process_device_mib"] = DEVICE_USE.sample(free, total)
    return memory


class DeviceUse:
    """This process's whole use of the card as the card sees it: the card's free memory before the process
    touched CUDA (the idle baseline, from NVML or nvidia-smi, which make no CUDA context) minus its free
    memory at each sample (torch.cuda.mem_get_info). That counts the CUDA context, library workspaces,
    managed memory while resident (the paged optimizer's) and all the allocator holds; it assumes no other
    process starts or stops on the card meanwhile. Without a baseline the card is taken to have been idle
    (used = total − free). With pynvml, NVML's own per-process figure is kept beside it when NVML can see
    this process (it cannot inside some containers)."""

    def __init__(self, idle_free_mib: float | None, baseline_source: str, nvml_handle=None) -> None:
        self.idle_free_mib, self.baseline_source, self.nvml_handle = (
            idle_free_mib,
            baseline_source,
            nvml_handle,
        )
        self.peak_mib = 0.0
        self.samples = 0
        self.nvml_process_peak_mib: float | None = None

    def sample(self, free: int, total: int) -> float:
        baseline = self.idle_free_mib if self.idle_free_mib is not None else total / MIB
        used = baseline - free / MIB
        self.peak_mib, self.samples = max(self.peak_mib, used), self.samples + 1
        own = _nvml_process_mib(self.nvml_handle)
        if own is not None:
            self.nvml_process_peak_mib = max(self.nvml_process_peak_mib or 0.0, own)
        return used

    @classmethod
    def from_idle_card(cls) -> DeviceUse:
        handle = _nvml_handle()
        return cls(*_idle_free_mib(handle), nvml_handle=handle)

    def report(self, memory: dict[str, float]) -> dict[str, Any]:
        """The peak over the samples, and a bound that does not depend on when they were taken: the allocator's
        peak reservation plus what the process holds outside the allocator now (context, workspaces, managed
        memory). The whole-process peak is the larger of the two."""
        outside = memory["process_device_mib"] - memory["reserved_mib"]
        bound = memory["max_reserved_mib"] + outside
        return {
            "whole_peak_mib": max(self.peak_mib, bound),
            "sampled_peak_mib": self.peak_mib,
            "reserved_peak_plus_outside_mib": bound,
            "outside_allocator_mib": outside,
            "samples": self.samples,
            "idle_free_mib": self.idle_free_mib,
            "baseline_source": self.baseline_source,
            "nvml_process_peak_mib": self.nvml_process_peak_mib,
        }


DEVICE_USE: DeviceUse | None = None


def start_device_use() -> DeviceUse | None:
    """Record the card's idle free memory; call first in a worker, before anything touches CUDA (unsloth's
    import does). None on a machine without an NVIDIA card."""
    global DEVICE_USE
    if shutil.which("nvidia-smi") is None and not os.path.exists("/dev/nvidiactl"):
        return None
    DEVICE_USE = DeviceUse.from_idle_card()
    return DEVICE_USE


def _visible_device() -> str:
    """The card CUDA calls device 0: the first of CUDA_VISIBLE_DEVICES (an index or a GPU-UUID), else 0."""
    return (os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0].strip() or "0"


def _nvml_handle():
    try:
        import pynvml

        pynvml.nvmlInit()
        device = _visible_device()
        if device.startswith(("GPU-", "MIG-")):
            return pynvml.nvmlDeviceGetHandleByUUID(device)
        return pynvml.nvmlDeviceGetHandleByIndex(int(device))
    except Exception:  # noqa: BLE001 - no pynvml, no driver, or a device NVML cannot name: no NVML figures
        return None


def _idle_free_mib(handle) -> tuple[float | None, str]:
    if handle is not None:
        import pynvml

        return pynvml.nvmlDeviceGetMemoryInfo(handle).free / MIB, "nvml"
    try:
        smi = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=memory.free",
                "--format=csv,noheader,nounits",
                "-i",
                _visible_device(),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return float(smi.stdout.split()[0]), "nvidia-smi"
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None, "none: the card is taken to have been idle (total − free)"


def _nvml_process_mib(handle) -> float | None:
    if handle is None:
        return None
    try:
        import pynvml

        for process in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if process.pid == os.getpid() and process.usedGpuMemory is not None:
                return process.usedGpuMemory / MIB
    except Exception:  # noqa: BLE001 - NVML without per-process accounting here
        return None
    return None


def whole_process_peak(memory: dict[str, float] | None) -> dict[str, Any]:
    """The process's whole-use report from its last `cuda_memory()` reading ({} without one)."""
    if DEVICE_USE is None or not memory or "process_device_mib" not in memory:
        return {}
    return DEVICE_USE.report(memory)


def is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return "out of memory" in text or "ran out of memory" in text


def synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def package_versions(
    names: tuple[str, ...] = (
        "torch",
        "transformers",
        "peft",
        "bitsandbytes",
        "accelerate",
        "tokenizers",
        "safetensors",
        "unsloth",
        "unsloth_zoo",
        "triton",
        "liger-kernel",
        "forumtune",
    ),
) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def environment() -> dict[str, Any]:
    import torch

    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "packages": package_versions(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "torch_cuda": torch.version.cuda,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        facts.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / GIB, 2),
            sm_count=props.multi_processor_count,
        )
        try:
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            facts["nvidia_smi"] = smi.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    else:
        facts["gpu"] = None
    return facts


# ------------------------------------------------------------------------------------- subprocesses


def run_worker(
    script: Path,
    spec: dict[str, Any],
    log_dir: Path,
    timeout_s: float,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run `script --worker SPEC` in a fresh interpreter; returns the JSON it wrote, or an error record."""
    log_dir.mkdir(parents=True, exist_ok=True)
    tag = spec["tag"]
    result_path = log_dir / f"{tag}.result.json"
    result_path.unlink(missing_ok=True)
    spec = {**spec, "result_path": str(result_path)}
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    started = time.perf_counter()
    with (log_dir / f"{tag}.log").open("w") as log:
        try:
            proc = subprocess.run(
                [sys.executable, str(script), "--worker", json.dumps(spec)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=timeout_s,
                check=False,
            )
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    wall = round(time.perf_counter() - started, 1)
    if result_path.exists():
        result = json.loads(result_path.read_text())
    else:
        tail = (log_dir / f"{tag}.log").read_text(errors="replace")[-3000:]
        result = {"status": "error", "error": f"worker exit {code}", "log_tail": tail}
    result.setdefault("wall_s", wall)
    return result


def write_json(path: Path | None, payload: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".partial")
    tmp.write_text(json.dumps(payload, indent=1, default=str))
    tmp.replace(path)


def fmt(value: Any, digits: int = 0, *, sci: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}e}" if sci else f"{value:,.{digits}f}"
    return str(value)


def print_table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(headers, widths)), "-|-".join("-" * w for w in widths)]
    lines += [
        " | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
        for row in cells
    ]
    text = "\n".join(lines)
    print(text, flush=True)
    return text
