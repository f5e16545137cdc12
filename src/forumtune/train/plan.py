"""The memory planner: peak GPU memory of a training config, from the model's config.json alone."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.table import Table
from transformers import AutoConfig, PretrainedConfig

from forumtune.base_model import resolve_base_model
from forumtune.config import Config
from forumtune.errors import ConfigError

GIB = 2**30
BYTES_PER_DTYPE = {"bfloat16": 2, "float16": 2, "float32": 4}


@dataclass(frozen=True)
class ModelShape:
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    q_dim: int
    kv_dim: int
    tied_embeddings: bool

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
        vocab=text.vocab_size, hidden=text.hidden_size, intermediate=text.intermediate_size,
        layers=text.num_hidden_layers, q_dim=heads * head_dim, kv_dim=kv_heads * head_dim,
        tied_embeddings=bool(getattr(hf_config, "tie_word_embeddings", False)),
    )


def load_shape(config: Config) -> ModelShape:
    try:
        return model_shape(AutoConfig.from_pretrained(resolve_base_model(config.model.base)))
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"cannot read the model config of model.base {config.model.base!r}: {exc}") from None


def estimate_parts(config: Config, shape: ModelShape, micro_batch: int, seq_len: int,
                   checkpointing: bool) -> dict[str, float]:
    """Bytes of each part of the peak."""
    linear = shape.linear_params_per_layer * shape.layers
    compute_bytes = BYTES_PER_DTYPE[config.model.compute_dtype]
    if config.model.load_in_4bit:
        constants = (1 / 64 + 4 / (64 * 256)) if config.model.double_quant else 4 / 64
        base_weights = linear * (0.5 + constants)
        other_bytes = 4  # norms and embeddings are upcast to fp32 for stable k-bit training
    else:
        base_weights = linear * compute_bytes
        other_bytes = compute_bytes
    embeddings = shape.vocab * shape.hidden * (1 if shape.tied_embeddings else 2)
    lora_params = config.lora.r * shape.lora_dims_per_layer * shape.layers
    optimizer_bytes = 8 if config.train.optimizer == "adamw" else 2
    tokens = micro_batch * seq_len
    layer_activations = tokens * (18 * shape.hidden + 4 * shape.intermediate) * compute_bytes
    kept_layers = 1 if checkpointing else shape.layers
    return {
        "base weights (quantized linear)" if config.model.load_in_4bit else "base weights": base_weights,
        "embeddings, head, norms": (embeddings + shape.hidden * (2 * shape.layers + 1)) * other_bytes,
        "LoRA weights + grads": lora_params * 8,
        "optimizer state": lora_params * optimizer_bytes,
        "checkpointed layer inputs": tokens * shape.hidden * compute_bytes * shape.layers if checkpointing else 0,
        "activations": layer_activations * kept_layers,
        "logits + loss": tokens * shape.vocab * (compute_bytes + 12),  # bf16 logits, fp32 copy, softmax, grad
    }


def format_gib(value: float) -> str:
    return f"{value / GIB:.2f} GiB"


def oom_advice(config: Config) -> str:
    train = config.train
    advice = [f"train.micro_batch_size={max(1, train.micro_batch_size // 2)} with "
              f"train.grad_accum_steps={train.grad_accum_steps * 2} (same effective batch)"]
    if not train.gradient_checkpointing:
        advice.append("train.gradient_checkpointing=true")
    advice.append(f"build.max_seq_len={max(64, config.build.max_seq_len // 2)}")
    return ("the GPU ran out of memory. Try, in this order: " + "; ".join(advice)
            + ". `forumtune plan CONFIG --vram GIB` estimates the peak before you train.")


@dataclass(frozen=True)
class MemoryPlan:
    parts: dict[str, float]
    vram_bytes: float

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    @property
    def fits(self) -> bool:
        return self.total <= self.vram_bytes


def plan_memory(config: Config, vram_gib: float | None = None) -> MemoryPlan:
    shape = load_shape(config)
    parts = estimate_parts(config, shape, config.train.micro_batch_size, config.build.max_seq_len,
                           config.train.gradient_checkpointing)
    return MemoryPlan(parts=parts, vram_bytes=(vram_gib or config.plan.vram_gib) * GIB)


def print_plan(plan: MemoryPlan, config: Config, console: Console) -> None:
    table = Table(title=f"estimated peak GPU memory: {config.name} "
                        f"(micro-batch {config.train.micro_batch_size} × {config.build.max_seq_len} tokens)")
    table.add_column("part")
    table.add_column("memory", justify="right")
    for name, value in plan.parts.items():
        table.add_row(name, format_gib(value))
    table.add_row("[bold]total", f"[bold]{format_gib(plan.total)}")
    console.print(table)
    verdict = "[green]fits" if plan.fits else "[red]does not fit"
    console.print(f"{verdict}[/] a {plan.vram_bytes / GIB:g} GiB card")
    if not plan.fits:
        console.print(oom_advice(config).replace("the GPU ran out of memory. ", ""))
