"""Write a merged Llama-family Hugging Face model directory as a single GGUF file for llama.cpp.

Mirrors llama.cpp's convert_hf_to_gguf.py for LlamaForCausalLM / MistralForCausalLM ("llama") and
Qwen2ForCausalLM ("qwen2"). This module orders the work; gguf_hparams, gguf_vocab and gguf_tensors
own the header keys, the tokenizer metadata and the tensors.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType
from rich.progress import track

from forumtune.atomic import atomic_file
from forumtune.export.errors import ExportError
from forumtune.export.files import read_json
from forumtune.export.gguf_hparams import add_hyperparameters, gguf_arch_for, require
from forumtune.export.gguf_tensors import TensorPlan, encode_tensor, plan_tensors
from forumtune.export.gguf_vocab import add_tokenizer

OUT_TYPES: dict[str, tuple[GGMLQuantizationType, LlamaFileType]] = {
    "f32": (GGMLQuantizationType.F32, LlamaFileType.ALL_F32),
    "f16": (GGMLQuantizationType.F16, LlamaFileType.MOSTLY_F16),
    "bf16": (GGMLQuantizationType.BF16, LlamaFileType.MOSTLY_BF16),
    "q8_0": (GGMLQuantizationType.Q8_0, LlamaFileType.MOSTLY_Q8_0),
}


def export_gguf(model_dir: Path, out_path: Path, out_type: str = "f16", name: str | None = None) -> Path:
    """Convert the Hugging Face model in `model_dir` to GGUF at `out_path` (out_type: f32, f16, bf16, q8_0).

    `name` becomes general.name (what llama.cpp and Ollama show); by default the directory's name.
    The file is written beside `out_path` and renamed into place only once complete.
    """
    model_dir, out_path = Path(model_dir), Path(out_path)
    target_qtype, file_type = out_type_named(out_type)
    config = read_json(model_dir / "config.json", "the merged model's config")
    arch = gguf_arch_for(config, model_dir)
    writer = GGUFWriter(path=None, arch=arch)
    add_hyperparameters(writer, config, model_dir, file_type, name or model_dir.name)
    add_tokenizer(writer, model_dir, vocab_size=require(config, "vocab_size", model_dir))
    with ExitStack() as open_files:
        plans = plan_tensors(model_dir, config, arch, target_qtype, open_files)
        for plan in plans:
            writer.add_tensor_info(
                plan.name, plan.shape, np.dtype(np.float32), plan.nbytes, raw_dtype=plan.qtype
            )
        with atomic_file(out_path) as partial_path:
            try:
                write_gguf(writer, plans, partial_path, description=f"GGUF {out_type} → {out_path.name}")
            except OSError as error:
                raise ExportError(f"could not write {out_path}: {error}; check free disk space.") from error
    return out_path


def out_type_named(out_type: str) -> tuple[GGMLQuantizationType, LlamaFileType]:
    if out_type not in OUT_TYPES:
        raise ExportError(
            f"out_type {out_type!r} is not written by the gguf package; use one of {sorted(OUT_TYPES)} (k-quants go through llama.cpp's quantize tool)."
        )
    return OUT_TYPES[out_type]


def write_gguf(writer: GGUFWriter, plans: list[TensorPlan], path: Path, description: str) -> None:
    """Header, metadata and tensor index first, then tensor data one tensor at a time (bounded memory)."""
    try:
        writer.write_header_to_file(path)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for plan in track(plans, description=description, transient=True):
            writer.write_tensor_data(encode_tensor(plan.load(), plan.qtype))
        writer.flush()
        for file in writer.fout or []:
            os.fsync(file.fileno())
    finally:
        writer.close()
