"""Loading the base model (4-bit NF4/FP4 or 8-bit through bitsandbytes, or plain) and attaching adapters.

Any causal LM that transformers knows loads the same way (Mistral, Llama 2/3, Qwen2, Gemma, Phi-3 ...),
from a local dir or a hub id. Adapters are LoRA, rsLoRA or DoRA on `all-linear` or named modules, new
or continued from a saved adapter (`train.init_adapter`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, PreTrainedModel

from forumtune import kernels
from forumtune.base_model import resolve_base_model
from forumtune.config import Config, LoraConfig, ModelConfig
from forumtune.errors import TrainError
from forumtune.kernels.layer_graphs import LayerGraphs

CheckpointingMode = bool | str  # True, False or "offload"
GRAPH_PAD_MULTIPLE = 64  # with CUDA graphs, batch widths round up to this so that shapes repeat


def pick_device(requested: str, local_rank: int = 0) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise TrainError("train.device is 'cuda' but no CUDA GPU is visible; use train.device=auto or cpu")
    if requested == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def quantization_config(model: ModelConfig, *, shardable: bool = False) -> BitsAndBytesConfig | None:
    """bitsandbytes settings; `shardable` stores 4-bit weights in the compute dtype so FSDP can shard them."""
    compute_dtype = getattr(torch, model.compute_dtype)
    if model.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    if not model.load_in_4bit:
        return None
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=model.quant_type,
        bnb_4bit_use_double_quant=model.double_quant,
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_quant_storage=compute_dtype if shardable else torch.uint8,
    )


def load_base_model(model: ModelConfig, device: torch.device, *, shardable: bool = False) -> PreTrainedModel:
    """The base model on `device`, quantized as model.load_in_4bit / load_in_8bit say."""
    path = resolve_base_model(model.base)
    kwargs = {"dtype": getattr(torch, model.compute_dtype), "attn_implementation": model.attn_implementation}
    quantization = quantization_config(model, shardable=shardable)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
        kwargs["device_map"] = {"": device.index or 0} if device.type == "cuda" else {"": "cpu"}
    try:
        loaded = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise TrainError(f"cannot load model.base {model.base!r}: {exc}") from None
    kernels.cpu_layout.use_trainable_layout(loaded)  # generation opts into the packed one (kernels/cpu_layout.py)
    return loaded if quantization is not None else loaded.to(device)


def peft_config(lora: LoraConfig) -> PeftLoraConfig:
    return PeftLoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules,
        modules_to_save=lora.modules_to_save, use_rslora=lora.use_rslora, use_dora=lora.use_dora,
        task_type="CAUSAL_LM",
    )


def enable_checkpointing(model: PreTrainedModel, mode: CheckpointingMode, *, fast: bool = False,
                         graphs: LayerGraphs | None = None) -> None:
    """Recompute each decoder layer in backward instead of keeping its activations; with "offload" the
    layer inputs kept for the recompute wait in pinned CPU memory instead of on the GPU. The fast path
    and "offload" use forumtune's checkpointing (kernels.offload), which can replay CUDA `graphs`."""
    if not mode:
        return
    kernels.precision.enable_checkpointing(model)
    if mode == "offload" or fast:
        kernels.offload.use_layer_checkpointing(model, offload=mode == "offload", graphs=graphs)
    model.enable_input_require_grads()  # a frozen embedding must still feed a graph to the checkpointed layers


def attach_lora(model: PreTrainedModel, lora: LoraConfig, *, gradient_checkpointing: CheckpointingMode,
                init_adapter: Path | None = None, fast: bool = False, graphs: LayerGraphs | None = None) -> PeftModel:
    """A trainable adapter on the frozen base: new from `lora`, or `init_adapter` continued. `fast` keeps
    the base in its compute dtype (no fp32 upcast), with liger's fused kernels when installed and each
    4-bit LoRA projection as one fused autograd function; `graphs` replays checkpointed layers as CUDA graphs."""
    quantized = getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)
    if fast:
        kernels.liger.apply_liger_kernels(model)
        kernels.precision.prepare_for_qlora(model, gradient_checkpointing=False)
    elif quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    enable_checkpointing(model, gradient_checkpointing, fast=fast, graphs=graphs)
    if init_adapter is not None:
        adapted = PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
    else:
        adapted = get_peft_model(model, peft_config(lora))
    if fast:
        kernels.lora_linear.use_fused_lora(adapted)
    return adapted


def load_for_training(config: Config, device: torch.device, *, shardable: bool = False,
                      graphs: LayerGraphs | None = None) -> PeftModel:
    base = load_base_model(config.model, device, shardable=shardable)
    base.config.use_cache = False
    return attach_lora(base, config.lora, gradient_checkpointing=config.train.gradient_checkpointing,
                       init_adapter=config.train.init_adapter, fast=uses_fast_path(config, device), graphs=graphs)


def layer_graphs_for(config: Config, device: torch.device, *, distributed: bool) -> LayerGraphs | None:
    """CUDA graphs for the checkpointed layers: on the fast path, with checkpointing, in a single process
    (DDP and FSDP hook into each parameter's gradient, which the graphs write directly)."""
    wanted = config.train.cuda_graphs and config.train.gradient_checkpointing and not distributed
    if not wanted or not uses_fast_path(config, device):
        return None
    longest = -(-config.build.max_seq_len // GRAPH_PAD_MULTIPLE) * GRAPH_PAD_MULTIPLE
    return LayerGraphs(device, max_tokens=config.train.micro_batch_size * longest)


def uses_fast_path(config: Config, device: torch.device) -> bool:
    """forumtune.kernels' path: on a GPU with a 16-bit compute dtype, unless train.fast_path is off."""
    return config.train.fast_path and device.type == "cuda" and config.model.compute_dtype != "float32"


def check_adapter_dir(adapter_dir: Path, key: str) -> dict:
    """The adapter's settings, or a TrainError naming `key` when the dir holds no PEFT adapter."""
    settings = adapter_dir / "adapter_config.json"
    if not settings.is_file():
        raise TrainError(f"{key}: {adapter_dir} holds no adapter_config.json; point it at a saved adapter dir "
                         "(e.g. runs/NAME/adapter)")
    return json.loads(settings.read_text())


def load_adapter_model(config: Config, adapter_dir: Path, device: torch.device) -> PeftModel:
    """The trained adapter on the base as training saw it, for evaluation and chat."""
    base = load_base_model(config.model, device)
    return PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False)
