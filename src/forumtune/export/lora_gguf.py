"""The adapter alone as a GGUF LoRA that llama.cpp applies on top of a base GGUF (`llama-cli -m base.gguf --lora`).

Same layout as llama.cpp's convert_lora_to_gguf.py: general.type "adapter", adapter.lora.alpha, and per
adapted weight two tensors `<gguf name>.lora_a` (r × in) and `.lora_b` (out × r), the latter with the
rotary row permutation of q/k. llama.cpp scales by alpha / r, like PEFT.
"""

from __future__ import annotations

import math
from pathlib import Path

import gguf
import numpy as np
from gguf import GGUFWriter

from forumtune.atomic import atomic_file
from forumtune.export.adapter import Adapter, load_adapter
from forumtune.export.errors import ExportError
from forumtune.export.files import read_json
from forumtune.export.gguf_hparams import gguf_arch_for
from forumtune.export.gguf_tensors import (
    PERMUTED_QK_ARCHS,
    gguf_tensor_name,
    permute_for_ggml_rotary,
    rotary_heads,
)


def export_lora_gguf(adapter_dir: Path, base_config_dir: Path, out_path: Path, name: str) -> Path:
    """Write the LoRA in `adapter_dir` as GGUF; `base_config_dir` holds the base model's config.json."""
    adapter_dir, out_path = Path(adapter_dir), Path(out_path)
    adapter = load_adapter(adapter_dir)
    check_llama_cpp_can_apply(adapter, adapter_dir)
    config = read_json(Path(base_config_dir) / "config.json", "the base model's config")
    arch = gguf_arch_for(config, Path(base_config_dir))
    writer = GGUFWriter(path=None, arch=arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_name(f"{name} (LoRA)")
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, llama_cpp_alpha(adapter))
    for hf_name, update in sorted(adapter.updates.items()):
        gguf_name = gguf_tensor_name(hf_name, adapter_dir)
        lora_b = update.lora_b.float().numpy()
        n_heads = rotary_heads(hf_name, config) if arch in PERMUTED_QK_ARCHS else None
        writer.add_tensor(f"{gguf_name}.lora_a", np.ascontiguousarray(update.lora_a.float().numpy()))
        writer.add_tensor(
            f"{gguf_name}.lora_b", permute_for_ggml_rotary(lora_b, n_heads) if n_heads else lora_b
        )
    with atomic_file(out_path) as partial:
        try:
            writer.write_header_to_file(partial)
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        except OSError as error:
            raise ExportError(f"could not write {out_path}: {error}; check free disk space.") from error
        finally:
            writer.close()
    return out_path


def check_llama_cpp_can_apply(adapter: Adapter, adapter_dir: Path) -> None:
    """llama.cpp's LoRA has one alpha per file and no DoRA or full-module replacements: refuse what it would drop."""
    reasons = []
    if adapter.uses_dora:
        reasons.append("it uses DoRA")
    if adapter.replacements:
        reasons.append(f"it trains whole modules ({sorted(adapter.replacements)[:2]}, lora.modules_to_save)")
    if adapter.config.get("alpha_pattern"):
        reasons.append("it has per-module alphas (alpha_pattern)")
    if adapter.config.get("use_rslora") and len({u.lora_a.shape[0] for u in adapter.updates.values()}) > 1:
        reasons.append("it combines rsLoRA with per-module ranks")
    if reasons:
        raise ExportError(
            f"adapter {adapter_dir} cannot be a llama.cpp LoRA because {' and '.join(reasons)}; "
            "export the merged model instead (export --format gguf)."
        )


def llama_cpp_alpha(adapter: Adapter) -> float:
    """llama.cpp scales by alpha / r; rsLoRA scales by alpha / sqrt(r), which is (alpha * sqrt(r)) / r."""
    if not adapter.config.get("use_rslora"):
        return adapter.alpha
    rank = next(iter(adapter.updates.values())).lora_a.shape[0]
    return adapter.alpha * math.sqrt(rank)
