"""The memory planner: peak GPU memory of a training config, from the model's config.json alone.

Two counts: the allocator's peak (what torch.cuda.max_memory_allocated measures), part by part, and the
whole process as the card sees it (what torch.cuda.mem_get_info and nvidia-smi show): the allocator's peak
plus the CUDA context, the cuBLAS workspaces, the paged optimizer's managed memory and the memory the
allocator holds but has not handed out. A run fits when the whole count fits what the card leaves to
processes; benchmarks/memory_plan.py measures both counts against these figures. `train/fit.py` turns the
plan into the config changes that make a run fit, `train/plan_report.py` prints it."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import AutoConfig, PretrainedConfig

from forumtune.base_model import resolve_base_model
from forumtune.config import Config
from forumtune.errors import ConfigError
from forumtune.kernels.answer_log_probs import CHUNK_TOKENS
from forumtune.kernels.liger import liger_available
from forumtune.preference_batches import REFERENCE_METHODS
from forumtune.train import host_embeddings
from forumtune.train.layer_memory import layer_parts
from forumtune.train.objectives import OBJECTIVES
from forumtune.train.tiled_mlp import AUTO_ABOVE_TOKENS, AUTO_TILE_TOKENS

# train.tile_mlp auto's tiles for rows of up to AUTO_ABOVE_TOKENS tokens, where the plan says only tiles fit
SHORT_ROW_TILE_TOKENS = AUTO_TILE_TOKENS[0]

GIB = 2**30
MIB = 2**20
BYTES_PER_DTYPE = {"bfloat16": 2, "float16": 2, "float32": 4}

# What the process holds on the card outside the allocator's tensors, measured as device used − reserved on
# an H100 80GB (torch 2.11, CUDA 13, benchmarks/results/memory-plan-train.json): torch's CUDA context is
# 527 MiB at initialisation, bitsandbytes' kernels add 92 MiB once the 4-bit model is loaded, and the first
# step adds the kernels and library handles it loads: 268 MiB on the fast path with offloaded checkpoints
# (196 without offload, 180 on the plain path), after the 80 MiB of paged optimizer state counted on its own
# row. The H200 measures the same (993 against the H100's 995 MiB at the end of `forumtune train` 2×2048,
# results/throughput-final-h200.json). A card with fewer SMs has a smaller context: this errs high there.
CUDA_CONTEXT_BYTES = 890 * MIB
# torch gives each stream that runs a matmul one cuBLAS workspace (32 MiB on Hopper and Blackwell, 8 MiB on
# Ampere and Ada; CUBLAS_WORKSPACE_CONFIG), which cuBLASLt shares, or 1 MiB of cuBLASLt's own when it does
# not. Taken from torch's allocator or, where torch leaves it to cuBLAS, outside it: either way the card holds
# it and the estimate's parts do not, so it is a row of its own (one stream: the default one).
CUBLAS_WORKSPACE_BYTES = 33 * MIB
# Memory the allocator keeps reserved but not allocated at the peak (freed blocks it caches, rounding, the
# CUDA graphs' pool): a fixed part plus a small share of what the step allocates above the run's static
# memory. Fitted to `forumtune train` (fast path, offloaded checkpoints) on an H200, max reserved − max
# allocated at 2×2048, 1×8192 and 1×16384: 301, 434 and 527 MiB against 1.16, 2.21 and 4.30 GiB above static
# (results/memory-plan-whole-h200.json); a share alone (0.25, fitted at 2×2048 first) doubled it at 16k.
ALLOCATOR_RESERVE_BYTES = 230 * MIB
ALLOCATOR_RESERVE_FRACTION = 0.07
# A card sold as 8 GB has 8 GiB of memory; the driver keeps some for itself (CUDA reports about 7.8 GiB)
# and a desktop on the same card takes its framebuffer: about 7.6 GiB is left to a training process.
DRIVER_RESERVE_GIB = 0.4


@dataclass(frozen=True)
class ModelShape:
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    q_dim: int
    kv_dim: int
    head_dim: int
    tied_embeddings: bool
    model_type: str = ""

    @property
    def linear_params_per_layer(self) -> int:
        attention = self.hidden * self.q_dim * 2 + self.hidden * self.kv_dim * 2
        return attention + 3 * self.hidden * self.intermediate

    @property
    def lora_dims_per_layer(self) -> int:
        """Sum of (in + out) over the layer's linear modules: LoRA of rank r has r times that many weights."""
        h, i = self.hidden, self.intermediate
        return (h + self.q_dim) * 2 + (h + self.kv_dim) * 2 + 3 * (h + i)


def model_shape(hf_config: PretrainedConfig) -> ModelShape:
    text = getattr(hf_config, "text_config", None) or hf_config
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    return ModelShape(
        vocab=text.vocab_size,
        hidden=text.hidden_size,
        intermediate=text.intermediate_size,
        layers=text.num_hidden_layers,
        q_dim=heads * head_dim,
        kv_dim=kv_heads * head_dim,
        head_dim=head_dim,
        tied_embeddings=bool(getattr(hf_config, "tie_word_embeddings", False)),
        model_type=getattr(text, "model_type", "") or getattr(hf_config, "model_type", ""),
    )


def load_shape(config: Config) -> ModelShape:
    try:
        return model_shape(AutoConfig.from_pretrained(resolve_base_model(config.model.base)))
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(
            f"cannot read the model config of model.base {config.model.base!r}: {exc}"
        ) from None


def estimate_parts(
    config: Config, shape: ModelShape, micro_batch: int, seq_len: int, checkpointing: bool | str
) -> dict[str, float]:
    """Bytes of each part of the peak: what lives all the run, then the larger of the two moments that
    peak — the end of the forward (checkpointed inputs + logits/loss) and one decoder layer's backward
    (checkpointed inputs + the layer's activations and gradients + attention + a dequantized weight).

    DPO and ORPO run each pair's chosen and rejected answers through the model together: twice the
    sequences of a row. Packed (build.packing), they share rows of max_seq_len tokens: at most twice the
    micro-batch's rows, the same bound. On the fast path their answer tokens go through the output head in
    chunks (kernels/answer_log_probs.py), off it their loss reads full-vocabulary logits. The
    reference pass of DPO and KTO (and KTO's KL rows) runs first, without gradients, and frees all it made
    before the policy's pass: its peak (one layer's activations, the logits) stays below the policy's, so it
    adds nothing to the peak; a reference adapter (train.init_adapter) adds its frozen weights."""
    micro_batch *= OBJECTIVES[config.train.method].sequences_per_row
    quantized = config.model.load_in_4bit or config.model.load_in_8bit
    compute_bytes, activation_bytes, fast = precision(config)
    tokens = micro_batch * seq_len
    parts = static_parts(config, shape)
    kept_inputs = tokens * shape.hidden * activation_bytes * shape.layers if checkpointing is True else 0
    saved_per_layer = (
        tokens * (7 * shape.hidden + 2 * shape.kv_dim + 3 * shape.intermediate) * activation_bytes
    )
    layers_kept = 1 if checkpointing else shape.layers
    layer = layer_parts(config, shape, tokens, checkpointing, activation_bytes, fast)
    attention = attention_bytes(config, shape, micro_batch, seq_len, fast, layers_kept)
    dequantized = shape.hidden * shape.intermediate * compute_bytes if quantized else 0
    fused_loss = fast and config.train.method == "sft"
    logits = loss_bytes(shape, tokens, compute_bytes, fused_loss)
    if fast and config.train.method != "sft" and "lm_head" not in (config.lora.modules_to_save or []):
        logits = chunked_head_bytes(shape, tokens, compute_bytes)  # a head trained in full reads the logits
    forward_end = kept_inputs + (0 if checkpointing else saved_per_layer * shape.layers) + logits
    backward = kept_inputs + sum(layer.values()) + attention + dequantized
    if backward >= forward_end:
        parts["checkpointed layer inputs"] = kept_inputs
        parts.update(layer)
        parts["attention scores"] = attention
        parts["dequantized weight (transient)"] = dequantized
    else:
        parts["checkpointed layer inputs"] = kept_inputs
        parts["activations (layers kept for backward)"] = forward_end - kept_inputs - logits
        parts["logits + loss"] = logits
    if fast and checkpointing and config.train.cuda_graphs is True and config.train.method == "sft":
        # the layer's backward lives in the graphs' own pool, which the loss cannot reuse; the graphs'
        # static buffers are the layer input and its output (or gradient)
        if backward >= forward_end:
            parts["logits + loss (beside the CUDA graphs' pool)"] = loss_bytes(
                shape, tokens, compute_bytes, fused_loss
            )
        parts["CUDA graphs' static buffers"] = 2 * tokens * shape.hidden * activation_bytes
    return {name: value for name, value in parts.items() if value}


def precision(config: Config) -> tuple[int, int, bool]:
    """Bytes per value of the compute dtype and of the activations, and whether the fast path runs."""
    quantized = config.model.load_in_4bit or config.model.load_in_8bit
    compute_bytes = BYTES_PER_DTYPE[config.model.compute_dtype]
    fast = quantized and config.train.fast_path and compute_bytes == 2
    # peft's k-bit preparation upcasts norms, embeddings and lm_head to fp32, and the residual stream with
    # them; the fast path keeps the compute dtype (forumtune.train.precision)
    return compute_bytes, 4 if quantized and not fast else compute_bytes, bool(fast)


def lora_parameters(config: Config, shape: ModelShape) -> int:
    return config.lora.r * shape.lora_dims_per_layer * shape.layers


def static_parts(config: Config, shape: ModelShape) -> dict[str, float]:
    """What the allocator holds for the whole run. The paged optimizer's 8-bit state is CUDA managed
    memory, outside the allocator (`card_parts`); an input embedding on the host, outside the card (`host_parts`)."""
    compute_bytes, other_bytes, _ = precision(config)
    linear = shape.linear_params_per_layer * shape.layers
    if config.model.load_in_4bit:
        constants = (1 / 64 + 4 / (64 * 256)) if config.model.double_quant else 4 / 64
        base_name, base_weights = "base weights (4-bit linear)", linear * (0.5 + constants)
    elif config.model.load_in_8bit:
        base_name, base_weights = "base weights (8-bit linear)", linear * (1 + 4 / 4096)
    else:
        base_name, base_weights = "base weights", linear * compute_bytes
    on_host = host_embeddings.planned(config, tied=shape.tied_embeddings)
    embeddings = shape.vocab * shape.hidden * (1 if shape.tied_embeddings or on_host else 2)
    lora_params = lora_parameters(config, shape)
    optimizer_bytes = {"adamw": 8, "adamw_8bit": 2, "paged_adamw_8bit": 0}[config.train.optimizer]
    with_reference = config.train.method in REFERENCE_METHODS and config.train.init_adapter is not None
    return {
        base_name: base_weights,
        "embeddings, head, norms": (embeddings + shape.hidden * (2 * shape.layers + 1)) * other_bytes,
        "LoRA weights + grads (fp32)": lora_params * 8,
        "optimizer state": lora_params * optimizer_bytes,
        "reference adapter (frozen, fp32)": lora_params * 4 if with_reference else 0,
    }


def attention_bytes(
    config: Config, shape: ModelShape, micro_batch: int, seq_len: int, fast: bool, layers_kept: int
) -> float:
    """bf16 SDPA takes the flash / memory-efficient kernels, which are linear in the sequence (counted in
    the layer's activations). fp32 inputs take the math path: fp32 batch × heads × S × S scores, measured
    at 3.3-3.8 score-sized tensors in one layer's backward and ~1.2 per layer kept without checkpointing
    (Mistral-7B shape, H100; benchmarks/RESULTS.md)."""
    if fast or (not config.model.load_in_4bit and config.model.compute_dtype != "float32"):
        return 0.0
    heads = shape.q_dim // max(1, shape.head_dim)
    scores = micro_batch * heads * seq_len * seq_len * 4
    return scores * 3.3 if layers_kept == 1 else scores * (1.2 * layers_kept + 2.5)


def loss_bytes(shape: ModelShape, tokens: int, compute_bytes: int, fast: bool) -> float:
    """Full-vocabulary logits with an fp32 copy, softmax and gradient; liger's fused linear+cross-entropy
    (the fast path, when installed) only ever holds a chunk of them."""
    if fast and liger_available():
        return tokens * shape.hidden * 6
    return tokens * shape.vocab * (compute_bytes + 12)


def chunked_head_bytes(shape: ModelShape, tokens: int, compute_bytes: int) -> float:
    """The preference losses' answer log-probs on the fast path: the answer tokens' last hidden states and
    the gradient of all of them, and one chunk's logits in fp32 with their softmax gradient and its copy in
    the compute dtype (kernels/answer_log_probs.py); the full logits never exist."""
    return 2 * tokens * shape.hidden * compute_bytes + CHUNK_TOKENS * shape.vocab * (8 + compute_bytes)


def card_parts(config: Config, shape: ModelShape, allocator_parts: dict[str, float]) -> dict[str, float]:
    """What the process holds on the card besides the allocator's peak. The paged optimizer's state counts
    while it is on the card, which it is from the first step on unless the card runs short (then the
    driver moves it to CPU memory: this errs high by at most its size)."""
    transient = sum(allocator_parts.values()) - sum(static_parts(config, shape).values())
    paged = lora_parameters(config, shape) * 2 if config.train.optimizer == "paged_adamw_8bit" else 0
    parts = {
        "CUDA context (driver, kernels, library handles)": CUDA_CONTEXT_BYTES,
        "cuBLAS + cuBLASLt workspaces": CUBLAS_WORKSPACE_BYTES,
        "paged optimizer state (CUDA managed memory)": paged,
        "allocator's reserve (reserved − allocated)": allocator_reserve(transient),
    }
    return {name: value for name, value in parts.items() if value}


def host_parts(config: Config, shape: ModelShape) -> dict[str, float]:
    """Training memory in the host's RAM rather than on the card: the input embedding table kept there."""
    if not host_embeddings.planned(config, tied=shape.tied_embeddings):
        return {}
    return {"input embedding (train.embeddings_on_host)": shape.vocab * shape.hidden * precision(config)[1]}


def allocator_reserve(transient_bytes: float) -> float:
    return ALLOCATOR_RESERVE_BYTES + ALLOCATOR_RESERVE_FRACTION * max(0.0, transient_bytes)


def whole_process_bytes(
    config: Config, shape: ModelShape, micro_batch: int, seq_len: int, checkpointing: bool | str
) -> float:
    allocator = estimate_parts(config, shape, micro_batch, seq_len, checkpointing)
    return sum(allocator.values()) + sum(card_parts(config, shape, allocator).values())


def usable_bytes(config: Config, vram_gib: float | None = None) -> float:
    """What processes can use of the card: plan.usable_gib when set (and no other card is named), else
    the card's memory less what the driver keeps."""
    if vram_gib is None and config.plan.usable_gib is not None:
        return config.plan.usable_gib * GIB
    return max(0.0, (vram_gib or config.plan.vram_gib) - DRIVER_RESERVE_GIB) * GIB


@dataclass(frozen=True)
class MemoryPlan:
    parts: dict[
        str, float
    ]  # the allocator's peak, part by part: what torch.cuda.max_memory_allocated measures
    card_parts: dict[str, float]  # what the process holds on the card besides (context, workspaces, ...)
    vram_bytes: float  # the card's memory, as sold
    usable_bytes: float  # what a process can use of it
    host_parts: dict[str, float] = field(default_factory=dict)  # held in host RAM instead (not counted)
    split_attention: str = "off"  # train.split_attention as planned (auto settled for this card)
    cuda_graphs: bool = True  # train.cuda_graphs as planned (auto settled for this card)
    tile_mlp: str | int = "auto"  # train.tile_mlp as planned (auto: its rule, or tiles where rows need them)

    @property
    def allocated(self) -> float:
        return sum(self.parts.values())

    @property
    def total(self) -> float:
        """The whole process as the card sees it (mem_get_info's total − free)."""
        return self.allocated + sum(self.card_parts.values())

    @property
    def fits(self) -> bool:
        return self.total <= self.usable_bytes


def plan_memory(config: Config, vram_gib: float | None = None, usable_gib: float | None = None) -> MemoryPlan:
    """`vram_gib`: the card's memory as sold (default plan.vram_gib); `usable_gib`: what a process can use
    of it when known (CUDA's total on the card itself), else derived (`usable_bytes`). With
    train.split_attention or train.cuda_graphs auto, the run as it trains on that card: the fastest of
    `auto_choices` that fits, or the leanest when none does."""
    choices = auto_choices(config)
    if len(choices) > 1:
        plan = None
        for settled in choices:
            plan = plan_memory(settled, vram_gib, usable_gib)
            if plan.fits:
                break
        return plan
    config = choices[0]
    shape = load_shape(config)
    parts = estimate_parts(
        config,
        shape,
        config.train.micro_batch_size,
        config.build.max_seq_len,
        config.train.gradient_checkpointing,
    )
    usable = usable_gib * GIB if usable_gib is not None else usable_bytes(config, vram_gib)
    return MemoryPlan(
        parts=parts,
        card_parts=card_parts(config, shape, parts),
        vram_bytes=(vram_gib or config.plan.vram_gib) * GIB,
        usable_bytes=usable,
        host_parts=host_parts(config, shape),
        split_attention=config.train.split_attention,
        cuda_graphs=config.train.cuda_graphs,
        tile_mlp=config.train.tile_mlp,
    )


def auto_choices(config: Config) -> list[Config]:
    """The settings train.split_attention, train.tile_mlp and train.cuda_graphs auto can take, fastest
    first: whole heads before split attention (9% slower at 16,384 tokens, benchmarks/RESULTS.md §3c), rows
    of up to 8,192 tokens untiled before tiled (tile_mlp auto tiles longer rows always), and the graphs kept
    as long as something fits with them."""
    train = config.train
    splits = ["off", "on"] if train.split_attention == "auto" else [train.split_attention]
    graphs = [True, False] if train.cuda_graphs == "auto" else [train.cuda_graphs]
    tiles: list[str | int] = [train.tile_mlp]
    tokens = train.micro_batch_size * config.build.max_seq_len
    if train.tile_mlp == "auto" and SHORT_ROW_TILE_TOKENS < tokens <= AUTO_ABOVE_TOKENS:
        tiles = ["off", SHORT_ROW_TILE_TOKENS]  # auto's own rule leaves these rows untiled
    return [
        with_train(config, split_attention=s, tile_mlp=t, cuda_graphs=g)
        for g in graphs
        for t in tiles
        for s in splits
    ]


def leanest(config: Config) -> Config:
    """The config with its auto settings taken as the least memory they can settle to."""
    return auto_choices(config)[-1]


def with_train(config: Config, **settings: object) -> Config:
    return config.model_copy(update={"train": config.train.model_copy(update=settings)})
