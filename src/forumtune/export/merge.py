"""Fold a trained LoRA/DoRA adapter into its base model and save a plain Hugging Face model directory.

The merge streams: base tensors are read one at a time from the safetensors files (memory-mapped),
updated in float32 and written out shard by shard, so peak memory is about one output shard plus one
tensor, not the model. A 7B merge therefore runs in well under 16 GB of RAM, on the CPU.
"""

from __future__ import annotations

import json
import re
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from transformers import AutoTokenizer, GenerationConfig
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from forumtune.atomic import atomic_directory
from forumtune.export.adapter import Adapter, load_adapter
from forumtune.export.base_weights import BaseTensor, base_tensors
from forumtune.export.checkpoint import OutTensor, open_tensors, tensor_names, write_sharded
from forumtune.export.errors import ExportError
from forumtune.export.files import read_json

TORCH_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
HUB_FILES = ["*.json", "*.safetensors", "tokenizer.model", "*.jinja"]


def merge_adapter(
    base_model: str | Path,
    adapter_dir: Path,
    out_dir: Path,
    dtype: str = "bfloat16",
    max_shard_size: str = "2GB",
) -> Path:
    """Merge the PEFT adapter in `adapter_dir` into `base_model` and write the result to `out_dir`.

    Base weights are taken in full precision (4-bit checkpoints dequantised), the update is added in
    float32 and the result stored as `dtype`. `out_dir` appears only once complete; a previous merge
    there (a directory with a config.json) is replaced, any other non-empty directory is refused.
    """
    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    torch_dtype = torch_dtype_named(dtype)
    adapter = load_adapter(adapter_dir)
    check_out_dir_is_replaceable(out_dir)
    base_dir = locate_base_model(base_model)
    model_config = read_json(base_dir / "config.json", "the base model's config")
    tokenizer = load_tokenizer(adapter_dir if holds_tokenizer(adapter_dir) else base_dir)
    with ExitStack() as open_files, atomic_directory(out_dir) as staging:
        base = base_tensors(open_tensors(base_dir, open_files))
        untied = untie_trained_head(base, adapter, model_config)
        planned = plan_merged_tensors(base, adapter, torch_dtype, base_dir, adapter_dir)
        try:
            write_sharded(planned, staging, max_shard_size, description=f"merging → {out_dir.name}")
            write_model_config(staging, {**model_config, **untied}, dtype)
            write_generation_config(staging, base_dir, model_config)
            tokenizer.save_pretrained(staging)
        except (OSError, SafetensorError) as error:
            raise ExportError(
                f"could not write the merged model for {out_dir}: {error}; check free disk space."
            ) from error
    return out_dir


def untie_trained_head(
    base: dict[str, BaseTensor], adapter: Adapter, model_config: dict[str, Any]
) -> dict[str, Any]:
    """A tied model (SmolLM2, Gemma, Qwen2-0.5B) stores no lm_head: the input embedding is the output layer
    too. When lora.modules_to_save trained lm_head, the output layer differs from the embedding now: the
    merged model gets an lm_head tensor of its own and a config that unties them."""
    head = "lm_head.weight"
    if not model_config.get("tie_word_embeddings") or head in base or head not in adapter.replacements:
        return {}
    embedding = base.get("model.embed_tokens.weight")
    if embedding is not None:
        base[head] = BaseTensor(head, embedding.shape, embedding.load)
    return {"tie_word_embeddings": False}


def plan_merged_tensors(
    base: dict[str, BaseTensor], adapter: Adapter, dtype: torch.dtype, base_dir: Path, adapter_dir: Path
) -> list[OutTensor]:
    check_adapter_fits(base, adapter, base_dir, adapter_dir)
    planned = []
    for name in tensor_names(base):
        tensor = base[name]
        planned.append(
            OutTensor(name, tensor.shape, dtype, lambda tensor=tensor: merged_tensor(tensor, adapter))
        )
    return planned


def merged_tensor(tensor: BaseTensor, adapter: Adapter) -> torch.Tensor:
    if tensor.name in adapter.replacements:
        return adapter.replacements[tensor.name]
    if tensor.name in adapter.updates:
        return adapter.updates[tensor.name].apply(tensor.load())
    return tensor.load()


def check_adapter_fits(
    base: dict[str, BaseTensor], adapter: Adapter, base_dir: Path, adapter_dir: Path
) -> None:
    """An adapter trained on another base would merge silently into garbage: compare names and shapes first."""
    for name, update in adapter.updates.items():
        shape = base[name].shape if name in base else None
        expected = (update.lora_b.shape[0], update.lora_a.shape[1])
        if shape != expected:
            found = "missing" if shape is None else f"shaped {shape}"
            raise ExportError(
                f"adapter {adapter_dir} does not fit base model {base_dir}: it updates {name} as {expected} but the "
                f"base has it {found}. Was it trained on that base? Check model.base."
            )
    for name, tensor in adapter.replacements.items():
        if name not in base or tuple(tensor.shape) != base[name].shape:
            raise ExportError(
                f"adapter {adapter_dir} replaces {name} (modules_to_save) but base model {base_dir} has no such "
                "tensor of that shape. Was it trained on that base? Check model.base."
            )


def torch_dtype_named(dtype: str) -> torch.dtype:
    if dtype not in TORCH_DTYPES:
        raise ExportError(
            f"dtype {dtype!r} is not supported for merging (merge.dtype); use one of {sorted(TORCH_DTYPES)}."
        )
    return TORCH_DTYPES[dtype]


def check_out_dir_is_replaceable(out_dir: Path) -> None:
    if not out_dir.exists() or is_model_dir(out_dir) or (out_dir.is_dir() and not any(out_dir.iterdir())):
        return
    raise ExportError(
        f"output path {out_dir} already exists and is not a model directory from an earlier merge; "
        "remove it or choose another out_dir."
    )


def is_model_dir(directory: Path) -> bool:
    return directory.is_dir() and (directory / "config.json").is_file()


def locate_base_model(base_model: str | Path) -> Path:
    """A local directory holding the base checkpoint; a Hub id is downloaded (safetensors only) into the HF cache."""
    path = Path(base_model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ExportError(
                f"base model directory {path} has no config.json; point model.base at a Hugging Face model dir."
            )
        return path
    if isinstance(base_model, str) and HUB_ID.match(base_model) and not path.exists():
        return download_base_model(base_model)
    raise ExportError(
        f"base model {str(base_model)!r} not found: no such local directory, and it is not a Hub id like 'org/name'."
    )


def download_base_model(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES))
    except Exception as error:  # the hub client raises many types (HTTP, offline, gated repo)
        raise ExportError(
            f"could not fetch base model {repo_id!r} from the Hugging Face Hub: {error}. "
            "Check the id (model.base), your network, or `huggingface-cli login` for gated models."
        ) from error


def holds_tokenizer(directory: Path) -> bool:
    return any((directory / name).is_file() for name in TOKENIZER_FILES)


def load_tokenizer(source: Path) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(str(source))
    except (OSError, ValueError) as error:
        raise ExportError(f"could not load a tokenizer from {str(source)!r}: {error}") from error


def write_model_config(out_dir: Path, model_config: dict[str, Any], dtype: str) -> None:
    """The base's config.json, now describing unquantised weights stored as `dtype`."""
    config = {
        key: value for key, value in model_config.items() if key not in ("quantization_config", "torch_dtype")
    }
    config["dtype"] = dtype
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def write_generation_config(out_dir: Path, base_dir: Path, model_config: dict[str, Any]) -> None:
    if (base_dir / "generation_config.json").is_file():
        generation = GenerationConfig.from_pretrained(base_dir)
    else:
        keys = ("bos_token_id", "eos_token_id", "pad_token_id")
        generation = GenerationConfig(
            **{key: model_config[key] for key in keys if model_config.get(key) is not None}
        )
    generation.save_pretrained(out_dir)
