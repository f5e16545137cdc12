"""The model as training needs it: the base (loaded by forumtune.models) with a trainable adapter attached.

Adapters are LoRA, rsLoRA or DoRA on `all-linear` or named modules, new or continued from a saved
adapter (`train.init_adapter`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import PreTrainedModel

from forumtune import kernels
from forumtune.config import AdapterConfig, Config
from forumtune.errors import TrainError
from forumtune.kernels.lora_linear import FusedLoRA
from forumtune.models import load_base_model
from forumtune.preference_batches import REFERENCE_ADAPTER, REFERENCE_METHODS
from forumtune.train import (
    host_embeddings,
    layer_checkpointing,
    plan,
    precision,
    recomputed_norm,
    tiled_mlp,
)
from forumtune.train.layer_graphs import LayerGraphs
from forumtune.train.plan import GIB
from forumtune.train.split_attention import split_above_tokens, use_split_attention

CheckpointingMode = bool | str  # True, False or "offload"
TRAINED_ADAPTER = "default"  # peft's name for the adapter that trains
GRAPH_PAD_MULTIPLE = 64  # with CUDA graphs, batch widths round up to this so that shapes repeat


def peft_config(lora: AdapterConfig) -> PeftLoraConfig:
    return PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        modules_to_save=lora.modules_to_save,
        use_rslora=lora.use_rslora,
        use_dora=lora.use_dora,
        task_type="CAUSAL_LM",
    )


def enable_checkpointing(
    model: PreTrainedModel, mode: CheckpointingMode, *, fast: bool = False, graphs: LayerGraphs | None = None
) -> None:
    """Recompute each decoder layer in backward instead of keeping its activations; with "offload" the
    layer inputs kept for the recompute wait in pinned CPU memory instead of on the GPU. The fast path
    and "offload" use forumtune's checkpointing (layer_checkpointing.py), which can replay CUDA `graphs`."""
    if not mode:
        return
    precision.enable_checkpointing(model)
    if mode == "offload" or fast:  # whose layers need no input that requires gradients
        layer_checkpointing.use_layer_checkpointing(model, offload=mode == "offload", graphs=graphs)
    else:
        model.enable_input_require_grads()  # a frozen embedding must still feed a graph to the layers


@dataclass(frozen=True)
class FastPathOptions:
    """How the fast path runs the adapted model (the train.* keys of the same names)."""

    dequantize_kernel: str = "triton"
    tile_mlp: str | int = "off"  # train.tile_mlp: the MLP in tiles of the sequence
    split_attention: str = "off"  # on or off (auto settled for the card): long rows' attention by head groups
    base_matmul: str = "bf16"  # the fused layers' base products


def attach_lora(
    model: PreTrainedModel,
    lora: AdapterConfig,
    *,
    gradient_checkpointing: CheckpointingMode,
    init_adapter: Path | None = None,
    fast: FastPathOptions | None = None,
    graphs: LayerGraphs | None = None,
) -> PeftModel:
    """A trainable adapter on the frozen base: new from `lora`, or `init_adapter` continued. `fast` keeps
    the base in its compute dtype (no fp32 upcast), with liger's fused kernels when installed, each 4-bit
    LoRA projection as one fused autograd function, and the options' long-row and FP8 settings; `graphs`
    replays checkpointed layers as CUDA graphs."""
    quantized = getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)
    if fast is not None:
        kernels.liger.apply_liger_kernels(model)
        precision.prepare_for_qlora(model, gradient_checkpointing=False)
    elif quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    enable_checkpointing(model, gradient_checkpointing, fast=fast is not None, graphs=graphs)
    if init_adapter is not None:
        adapted = PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
    else:
        adapted = get_peft_model(model, peft_config(lora))
    if fast is not None:
        use_fast_path(adapted, fast, checkpointing=bool(gradient_checkpointing))
    return adapted


def use_fast_path(adapted: PeftModel, fast: FastPathOptions, *, checkpointing: bool) -> None:
    fused = FusedLoRA(dequantize=fast.dequantize_kernel, base_matmul=fast.base_matmul)
    kernels.lora_linear.use_fused_lora(adapted, fused)
    tiling = tiled_mlp.tiling_for(fast.tile_mlp, split_attention=fast.split_attention == "on")
    if checkpointing and tiling is not None:
        tiled_mlp.use_tiled_mlp(adapted, tiling)
        recomputed_norm.use_recomputed_attention_norm(adapted, tiling)
    use_split_attention(adapted, split_above_tokens(fast.split_attention))


def load_for_training(
    config: Config,
    device: torch.device,
    *,
    shardable: bool = False,
    distributed: bool = False,
    graphs: LayerGraphs | None = None,
) -> PeftModel:
    """The model to train on `device`; `shardable`: for FSDP; `distributed`: one of several processes
    (torchrun). With train.embeddings_on_host its input embedding table is moved to host memory
    (train/host_embeddings.py): only this model's, which no other stage loads."""
    config = settled_for_card(config, device)
    base = load_base_model(config.model, device, shardable=shardable)
    base.config.use_cache = False
    fast = None
    if uses_fast_path(config, device):
        fast = FastPathOptions(
            dequantize_kernel=config.train.dequantize_kernel,
            # FSDP swaps each layer's parameters between shards and whole tensors around the layer's passes,
            # which the tiles' backward (a recompute of its own) is not written for
            tile_mlp="off" if shardable else config.train.tile_mlp,
            split_attention=config.train.split_attention,
            base_matmul=config.train.base_matmul,
        )
    model = attach_lora(
        base,
        config.lora,
        gradient_checkpointing=config.train.gradient_checkpointing,
        init_adapter=config.train.init_adapter,
        fast=fast,
        graphs=graphs,
    )
    if config.train.method in REFERENCE_METHODS and config.train.init_adapter is not None:
        add_reference_adapter(model, config.train.init_adapter)
    host_embeddings.move_if_wanted(
        model,
        config.train.embeddings_on_host,
        device=device,
        fast_path=fast is not None,
        distributed=distributed or shardable,
    )
    return model


def settled_for_card(config: Config, device: torch.device) -> Config:
    """The config with train.split_attention, train.tile_mlp and train.cuda_graphs auto settled for this
    run's card: as fast as the memory plan says still fits it (plan.auto_choices), against plan.usable_gib
    when set (the card a run is sized for), else CUDA's total memory. On the CPU split attention and graphs
    are off, and tile_mlp keeps its rule."""
    train = config.train
    if "auto" not in (train.split_attention, train.cuda_graphs, train.tile_mlp):
        return config
    if device.type != "cuda":
        return plan.with_train(
            config,
            split_attention="off" if train.split_attention == "auto" else train.split_attention,
            cuda_graphs=False if train.cuda_graphs == "auto" else train.cuda_graphs,
        )
    if config.plan.usable_gib is not None:
        card_gib, usable_gib = config.plan.vram_gib, config.plan.usable_gib
    else:
        card_gib = usable_gib = torch.cuda.get_device_properties(device).total_memory / GIB
    settled = plan.plan_memory(config, card_gib, usable_gib=usable_gib)
    return plan.with_train(
        config,
        split_attention=settled.split_attention,
        cuda_graphs=settled.cuda_graphs,
        tile_mlp=settled.tile_mlp,
    )


def add_reference_adapter(model: PeftModel, adapter_dir: Path) -> None:
    """The starting adapter once more, frozen, as the reference of DPO and KTO: preference tuning from an
    SFT adapter compares with that SFT model, not with the bare base. It costs the adapter's size (a few
    MB), not a second model; only the trained adapter is saved (checkpoints.save_adapter_weights)."""
    model.load_adapter(str(adapter_dir), adapter_name=REFERENCE_ADAPTER, is_trainable=False)
    model.set_adapter(TRAINED_ADAPTER)


def layer_graphs_for(config: Config, device: torch.device, *, distributed: bool) -> LayerGraphs | None:
    """CUDA graphs for the checkpointed layers: on the fast path, with checkpointing, in a single process
    (DDP and FSDP hook into each parameter's gradient, which the graphs write directly), for SFT (a
    preference loss's reference pass runs other weights through the same layers, which a replay would not)."""
    wanted = (
        settled_for_card(config, device).train.cuda_graphs is True
        and config.train.gradient_checkpointing
        and not distributed
        and config.train.method == "sft"
    )
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
        raise TrainError(
            f"{key}: {adapter_dir} holds no adapter_config.json; point it at a saved adapter dir "
            "(e.g. runs/NAME/adapter)"
        )
    return json.loads(settings.read_text())
