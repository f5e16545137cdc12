"""Fold a trained LoRA adapter into its base model and save a plain Hugging Face model directory."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from peft import PeftModel
from safetensors import SafetensorError
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from forumtune.export.errors import ExportError

TORCH_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def merge_adapter(
    base_model: str | Path,
    adapter_dir: Path,
    out_dir: Path,
    dtype: str = "bfloat16",
    max_shard_size: str = "2GB",
) -> Path:
    """Merge the PEFT adapter in `adapter_dir` into `base_model` and write the result to `out_dir`.

    The base is loaded unquantized in `dtype`, so a QLoRA adapter is folded into full-precision weights.
    `out_dir` appears only once complete: it is written beside itself and renamed at the end. A previous
    merge in `out_dir` (a directory with a config.json) is replaced; any other non-empty directory is refused.
    """
    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    torch_dtype = torch_dtype_named(dtype)
    check_adapter_dir(adapter_dir)
    check_out_dir_is_replaceable(out_dir)
    base_ref = locate_base_model(base_model)
    tokenizer = load_tokenizer(adapter_dir if holds_tokenizer(adapter_dir) else base_ref)
    merged = load_merged_model(base_ref, adapter_dir, torch_dtype)
    with staging_dir_for(out_dir) as staging:
        save_merged(merged, tokenizer, staging, out_dir, max_shard_size)
    return out_dir


def torch_dtype_named(dtype: str) -> torch.dtype:
    if dtype not in TORCH_DTYPES:
        raise ExportError(f"dtype {dtype!r} is not supported for merging; use one of {sorted(TORCH_DTYPES)}.")
    return TORCH_DTYPES[dtype]


def check_adapter_dir(adapter_dir: Path) -> None:
    if not (adapter_dir / ADAPTER_CONFIG).is_file():
        raise ExportError(
            f"adapter directory {adapter_dir} has no {ADAPTER_CONFIG}; pass the directory that "
            "PeftModel.save_pretrained wrote at the end of training."
        )
    if not (adapter_dir / ADAPTER_WEIGHTS).is_file():
        raise ExportError(
            f"adapter directory {adapter_dir} has no {ADAPTER_WEIGHTS}; only safetensors adapters are "
            "accepted (re-save the adapter with save_pretrained(..., safe_serialization=True))."
        )


def check_out_dir_is_replaceable(out_dir: Path) -> None:
    if not out_dir.exists() or is_model_dir(out_dir) or (out_dir.is_dir() and not any(out_dir.iterdir())):
        return
    raise ExportError(
        f"output path {out_dir} already exists and is not a model directory from an earlier merge; "
        "remove it or choose another out_dir."
    )


def is_model_dir(directory: Path) -> bool:
    return directory.is_dir() and (directory / "config.json").is_file()


def locate_base_model(base_model: str | Path) -> str:
    """Return a local directory or Hub id for `from_pretrained`, failing early on a missing local path."""
    path = Path(base_model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ExportError(
                f"base model directory {path} has no config.json; point at a Hugging Face model dir."
            )
        return str(path)
    if isinstance(base_model, str) and HUB_ID.match(base_model) and not path.exists():
        return base_model
    raise ExportError(
        f"base model {str(base_model)!r} not found: no such local directory, and it is not a Hub id like 'org/name'."
    )


def holds_tokenizer(directory: Path) -> bool:
    return any((directory / name).is_file() for name in TOKENIZER_FILES)


def load_tokenizer(source: str | Path) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(str(source))
    except (OSError, ValueError) as error:
        raise ExportError(f"could not load a tokenizer from {str(source)!r}: {error}") from error


def load_merged_model(base_ref: str, adapter_dir: Path, torch_dtype: torch.dtype) -> PreTrainedModel:
    base = load_base_model(base_ref, torch_dtype)
    try:
        adapted = PeftModel.from_pretrained(base, str(adapter_dir))
    except (ValueError, RuntimeError, KeyError) as error:
        raise ExportError(
            f"adapter {adapter_dir} does not fit base model {base_ref!r}; was it trained on that base? ({error})"
        ) from error
    return adapted.merge_and_unload()


def load_base_model(base_ref: str, torch_dtype: torch.dtype) -> PreTrainedModel:
    try:
        config = AutoConfig.from_pretrained(base_ref)
        if getattr(config, "quantization_config", None):
            raise ExportError(
                f"base model {base_ref!r} is a pre-quantized checkpoint; merge into the original "
                "full-precision base instead, so the adapter is folded into unquantized weights."
            )
        return AutoModelForCausalLM.from_pretrained(base_ref, config=config, dtype=torch_dtype)
    except (OSError, ValueError) as error:
        raise ExportError(f"could not load base model {base_ref!r}: {error}") from error


def save_merged(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    staging: Path,
    out_dir: Path,
    max_shard_size: str,
) -> None:
    try:
        model.save_pretrained(staging, max_shard_size=max_shard_size)
        tokenizer.save_pretrained(staging)
    except (OSError, SafetensorError) as error:
        raise ExportError(
            f"could not write the merged model for {out_dir}: {error}; check free disk space."
        ) from error


@contextmanager
def staging_dir_for(out_dir: Path) -> Iterator[Path]:
    """Yield an empty directory beside `out_dir`; move it to `out_dir` on success, delete it on failure."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = hidden_sibling(out_dir, "partial")
    staging.mkdir()
    try:
        yield staging
        replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def replace_dir(new: Path, target: Path) -> None:
    """Rename `new` to `target`; an existing `target` is moved aside first, so it is never half-written."""
    if not target.exists():
        os.replace(new, target)
        return
    previous = hidden_sibling(target, "previous")
    os.replace(target, previous)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(previous, target)
        raise
    shutil.rmtree(previous, ignore_errors=True)


def hidden_sibling(path: Path, purpose: str) -> Path:
    return path.parent / f".{path.name}.{purpose}-{uuid.uuid4().hex[:12]}"
