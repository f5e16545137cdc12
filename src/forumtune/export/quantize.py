"""k-quants (Q4_K_M and friends) through llama.cpp's own quantizer: the llama-quantize tool, else its bindings.

The gguf package writes only f32/f16/bf16/Q8_0 itself; k-quant choices (which tensors get more bits)
belong to llama.cpp, so forumtune writes a full-precision GGUF first and hands it over.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from forumtune.atomic import atomic_file
from forumtune.export.errors import ExportError
from forumtune.export.files import hidden_sibling
from forumtune.export.gguf_export import export_gguf
from forumtune.export.llama_runtime import llama_cpp_available, quantize_with_bindings

LLAMA_QUANT_TYPES = ("q2_k", "q3_k_m", "q4_0", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k")
QUANTIZE_TOOL_NAMES = ("llama-quantize", "quantize")
HOW_TO_GET_QUANTIZE = (
    "llama.cpp's quantize tool was not found. Get it with one of: `brew install llama.cpp` (macOS/Linux), "
    "a release zip from github.com/ggml-org/llama.cpp/releases (put llama-quantize on PATH or set "
    "export.llama_quantize), or `pip install 'forumtune[llama]'` (llama-cpp-python, whose bindings quantize "
    "too). Or choose export.gguf_type f16, bf16 or q8_0, which need no extra tool."
)
DTYPE_TO_GGUF = {"bfloat16": "bf16", "float16": "f16", "float32": "f32"}


def find_quantize_tool(configured: Path | None) -> Path | None:
    if configured is not None:
        if not configured.is_file():
            raise ExportError(
                f"export.llama_quantize {configured} does not exist; point it at llama-quantize."
            )
        return configured
    found = next((shutil.which(name) for name in QUANTIZE_TOOL_NAMES if shutil.which(name)), None)
    return Path(found) if found else None


def export_k_quant(
    model_dir: Path, out_path: Path, quant_type: str, name: str, quantize_tool: Path | None = None
) -> Path:
    """Write a full-precision GGUF beside `out_path`, quantize it to `quant_type`, and remove the intermediate."""
    if quant_type not in LLAMA_QUANT_TYPES:
        raise ExportError(
            f"quant type {quant_type!r} is unknown; llama.cpp types offered: {LLAMA_QUANT_TYPES}."
        )
    tool = find_quantize_tool(quantize_tool)
    if tool is None and not llama_cpp_available():
        raise ExportError(HOW_TO_GET_QUANTIZE)
    intermediate = hidden_sibling(out_path, "full-precision").with_suffix(".gguf")
    try:
        export_gguf(model_dir, intermediate, intermediate_type(model_dir), name=name)
        with atomic_file(out_path) as partial:
            if tool is not None:
                run_quantize_tool(tool, intermediate, partial, quant_type)
            else:
                quantize_with_bindings(intermediate, partial, quant_type)
    finally:
        intermediate.unlink(missing_ok=True)
    return out_path


def intermediate_type(model_dir: Path) -> str:
    """Quantize from the merged model's own precision: no rounding twice."""
    config = json.loads((model_dir / "config.json").read_text())
    return DTYPE_TO_GGUF.get(str(config.get("dtype") or config.get("torch_dtype")), "f16")


def run_quantize_tool(tool: Path, source: Path, target: Path, quant_type: str) -> None:
    result = subprocess.run(
        [str(tool), str(source), str(target), quant_type.upper()], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ExportError(f"{tool} failed to quantize to {quant_type.upper()}:\n{result.stderr[-2000:]}")
