"""The compute of a LoRA training run: FLOPs per token from the model's config, the peak of known GPUs, and
the model FLOP/s utilisation (MFU) that turns the two into an expected time.

The convention (benchmarks/RESULTS.md states it beside every MFU figure): the *model* FLOPs of a token are
what the step must compute, whatever the implementation:

* forward: 2 FLOP per weight of every matmul (the frozen base's linear layers, the LoRA adapters, the
  output head; the embedding is a lookup) plus attention's two matmuls, QKᵀ and AV, at 2·q_dim FLOP per
  key each, over the causal half of the sequence ((S + 1) / 2 keys per query on average);
* backward: the input gradients, 2 FLOP per weight again, the weight gradients of the trainable (LoRA)
  weights only, 2 more per weight (a frozen weight gets none: 4 FLOP per frozen weight and 6 per trainable
  one in all), and attention's backward, twice its forward.

Recomputing checkpointed layers in the backward is hardware work, not model work: it is counted apart
(`StepFlops.recompute`) and left out of MFU. On the fast path it leaves out the down projection of layers
whose backward never reads it (kernels/lora_linear.py). The 6·N rule of full fine-tuning (a weight gradient
for every weight) would count the frozen base 1.5× and read 1.5× higher.
"""

from __future__ import annotations

from dataclasses import dataclass

from forumtune.train.plan import ModelShape

# model types whose decoder layer ends in `residual + down_proj(...)`: the fast path's recompute skips it
# (kernels/lora_linear.py, LAYERS_ENDING_IN_DOWN_PROJ)
ENDS_IN_DOWN_PROJ = frozenset({"llama", "mistral", "qwen2", "qwen3"})


@dataclass(frozen=True)
class StepFlops:
    """FLOPs per trained-on token (a position of a row the model runs over) of one training step."""

    forward: float
    backward: float
    recompute: float  # the checkpointed layers' forward once more, in the backward

    @property
    def model(self) -> float:
        """What MFU counts: forward + backward."""
        return self.forward + self.backward

    @property
    def hardware(self) -> float:
        return self.model + self.recompute


def attention_flops(shape: ModelShape, seq_len: int) -> float:
    """Forward FLOPs of the attention scores per token, all layers: QKᵀ and AV over the causal half."""
    return 2 * 2 * shape.q_dim * (seq_len + 1) / 2 * shape.layers


def step_flops(
    shape: ModelShape,
    seq_len: int,
    lora_r: int,
    *,
    checkpointing: bool | str = True,
    skip_down_proj: bool = False,
    trained_head: bool = False,
) -> StepFlops:
    """FLOPs per token at `seq_len` tokens per row, for LoRA of rank `lora_r` on every linear layer.
    `skip_down_proj`: the recompute leaves out the down projections (the fast path, on `ENDS_IN_DOWN_PROJ`);
    `trained_head`: the output head is trained too (lora.modules_to_save), so it gets weight gradients."""
    base = shape.linear_params_per_layer * shape.layers
    head = shape.vocab * shape.hidden
    lora = lora_r * shape.lora_dims_per_layer * shape.layers
    attention = attention_flops(shape, seq_len)
    forward = 2 * (base + head + lora) + attention
    backward = 2 * (base + head + lora) + 2 * (lora + (head if trained_head else 0)) + 2 * attention
    recompute = 0.0
    if checkpointing:
        recompute = 2 * (base + lora) + attention
        if skip_down_proj:
            recompute -= 2 * shape.hidden * shape.intermediate * shape.layers
    return StepFlops(forward=forward, backward=backward, recompute=recompute)


@dataclass(frozen=True)
class Gpu:
    key: str  # what `forumtune plan --gpu` takes
    name: str
    bf16_tflops: float  # dense (no sparsity) bf16 tensor-core peak with fp32 accumulation
    match: tuple[str, ...]  # substrings of torch.cuda.get_device_name() that name it, all required


# NVIDIA's datasheets and architecture whitepapers, dense bf16 with fp32 accumulate (what training uses; the
# sheets' larger figures are with 2:4 sparsity). GeForce cards run fp32 accumulation at half their fp16-
# accumulate rate, which their headline figure is: the 4090's 165.2 is the Ada whitepaper's "FP16/BF16
# Tensor TFLOPS with FP32 Accumulate" (330.3 with fp16 accumulate), the 3090's 71 and the 3070's 40.6 the
# Ampere GA102/GA104 figures likewise. The data-centre and workstation cards run both at full rate.
GPUS: tuple[Gpu, ...] = (
    Gpu("h200", "NVIDIA H200", 989.4, ("H200",)),
    Gpu("h100-pcie", "NVIDIA H100 PCIe", 756.0, ("H100", "PCIe")),
    Gpu("h100", "NVIDIA H100 SXM", 989.4, ("H100",)),
    Gpu("a100", "NVIDIA A100", 312.0, ("A100",)),
    Gpu("l40s", "NVIDIA L40S", 362.1, ("L40S",)),
    Gpu("a6000", "NVIDIA RTX A6000", 154.8, ("A6000",)),
    Gpu("a10", "NVIDIA A10", 125.0, ("A10",)),
    Gpu("l4", "NVIDIA L4", 121.0, ("L4",)),
    Gpu("4090", "GeForce RTX 4090", 165.2, ("4090",)),
    Gpu("4080", "GeForce RTX 4080", 97.5, ("4080",)),
    Gpu("3090", "GeForce RTX 3090", 71.0, ("3090",)),
    Gpu("3080", "GeForce RTX 3080", 59.5, ("3080",)),
    Gpu("3070", "GeForce RTX 3070", 40.6, ("3070",)),
)
GPU_KEYS = tuple(gpu.key for gpu in GPUS)


def gpu_named(key: str) -> Gpu:
    """The table's entry for `key` (a GPU_KEYS value, case-insensitive); KeyError names the known ones."""
    for gpu in GPUS:
        if gpu.key == key.lower():
            return gpu
    raise KeyError(f"unknown GPU {key!r}; known: {', '.join(GPU_KEYS)}")


def detect_gpu(device_name: str | None) -> Gpu | None:
    """The table's entry for a CUDA device name ('NVIDIA H100 80GB HBM3' -> h100), None when not listed.
    The table is in order: the first entry whose substrings all occur wins (L40S before L4)."""
    if not device_name:
        return None
    upper = device_name.upper()
    for gpu in GPUS:
        if all(part.upper() in upper for part in gpu.match):
            return gpu
    return None


def local_gpu() -> Gpu | None:
    """This machine's first CUDA GPU, when the table lists it."""
    import torch

    return detect_gpu(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else None


def mfu(tokens_per_s: float | None, flops: StepFlops, gpu: Gpu | None) -> float | None:
    """Model FLOP/s utilisation, a fraction of the GPU's dense bf16 peak (None when either is unknown)."""
    if not tokens_per_s or gpu is None:
        return None
    return tokens_per_s * flops.model / (gpu.bf16_tflops * 1e12)


# The fast path's MFU as measured, for predicting a run's time on another card: forumtune train at 2×2048 on
# the Mistral-7B shape on an H200, 12,198 tokens/s median (benchmarks/RESULTS.md §0, results/throughput-final-
# h200.json): 30.4 GFLOP per token by this module's count, 37.4% of 989.4 TFLOP/s. Checked against the other
# recorded runs in RESULTS.md ("Compute estimate"): within 4% where the GPU, not the host, sets the pace.
FAST_PATH_MFU = 0.374
# The plain path (peft's fp32 upcast, fp32 math attention): the plain stack at 2×2048 on an H100, 2,716
# tokens/s median (RESULTS.md §0): 8.3%. It falls with the sequence (8,192 tokens: 4.0%), so this errs short there.
PLAIN_PATH_MFU = 0.083
