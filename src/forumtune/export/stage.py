"""The merge and export stages: what `forumtune merge` / `forumtune export` do with a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from forumtune.config import Config
from forumtune.export.errors import ExportError
from forumtune.export.files import hidden_sibling
from forumtune.export.gguf_export import OUT_TYPES, export_gguf
from forumtune.export.lora_gguf import export_lora_gguf
from forumtune.export.merge import locate_base_model, merge_adapter
from forumtune.export.modelfile import write_modelfile
from forumtune.export.quantize import export_k_quant
from forumtune.export.verify import VerifyReport, verify_gguf
from forumtune.layout import RunLayout


def run_merge(config: Config, run_dir: Path, console: Console) -> dict[str, Any]:
    from forumtune.base_model import resolve_base_model

    paths = RunLayout.of(config, run_dir)
    out = merge_adapter(
        resolve_base_model(config.model.base),
        paths.final.adapter,  # train.then's adapter when the run trains twice
        paths.merged,
        dtype=config.merge.dtype,
        max_shard_size=config.merge.max_shard_size,
    )
    console.print(f"merged model written to {escape(str(out))}")
    return {"merged_dir": str(out)}


def run_export(
    config: Config,
    run_dir: Path,
    console: Console,
    formats: list[str] | None = None,
    verify: bool | None = None,
) -> dict[str, Any]:
    """Write the requested formats into run_dir/export; with verify, check each against the merged model."""
    formats = formats or list(config.export.formats)
    verify = config.export.verify if verify is None else verify
    paths = RunLayout.of(config, run_dir)
    written: dict[str, Any] = {}
    if "gguf" in formats:
        written["gguf"] = str(write_gguf(config, paths, console))
    if "modelfile" in formats:
        written["modelfile"] = str(write_ollama_modelfile(config, paths, console))
    if "lora-gguf" in formats:
        out = export_lora_gguf(paths.final.adapter, paths.merged, paths.lora_gguf, config.name)
        console.print(
            f"GGUF LoRA adapter written to {escape(str(out))} "
            f"(use: llama-cli -m BASE.gguf --lora {escape(out.name)})"
        )
        written["lora_gguf"] = str(out)
    if verify and "gguf" in formats:
        print_report(verify_gguf(paths.gguf, paths.merged, config.export.gguf_type), console)
    if verify and "lora-gguf" in formats:
        print_report(verify_lora_gguf(config, paths), console)
    return written


def write_gguf(config: Config, paths: RunLayout, console: Console) -> Path:
    out_type, out = config.export.gguf_type, paths.gguf
    if out_type in OUT_TYPES:
        export_gguf(paths.merged, out, out_type, name=config.name)
    else:
        export_k_quant(paths.merged, out, out_type, config.name, config.export.llama_quantize)
    console.print(f"GGUF written to {escape(str(out))} ({out.stat().st_size / 2**20:.1f} MiB)")
    return out


def write_ollama_modelfile(config: Config, paths: RunLayout, console: Console) -> Path:
    model_file = paths.gguf
    if not model_file.is_file():
        raise ExportError(
            f"the Modelfile points at {model_file}, which does not exist; export with --format gguf too."
        )
    out = write_modelfile(
        paths.merged,
        model_file,
        paths.modelfile,
        system_prompt=config.chat.system_prompt or config.build.system_prompt,
        temperature=config.chat.temperature,
    )
    shown = escape(str(out))
    console.print(f"Ollama Modelfile written to {shown} (use: ollama create {config.name} -f {shown})")
    return out


def verify_lora_gguf(config: Config, paths: RunLayout) -> VerifyReport:
    """llama.cpp applies the adapter GGUF to a GGUF of the base; together they must match the merged model."""
    from forumtune.base_model import resolve_base_model

    base_dir = locate_base_model(resolve_base_model(config.model.base))
    base_gguf = hidden_sibling(paths.lora_gguf, "base").with_suffix(".gguf")
    try:
        export_gguf(base_dir, base_gguf, "f32", name=f"{config.name}-base")
        return verify_gguf(base_gguf, paths.merged, "f32", lora_path=paths.lora_gguf)
    finally:
        base_gguf.unlink(missing_ok=True)


def print_report(report: VerifyReport, console: Console) -> None:
    console.print(
        f"[green]verified[/] {escape(report.gguf_path.name)}: {report.tensors} tensors, "
        "structure as the merged model"
    )
    if not report.llama_cpp_ran:
        console.print(
            "logits not compared: install llama-cpp-python (pip install 'forumtune[llama]')",
            style="dim",
            markup=False,
        )
        return
    table = Table("prompt", "same token ids", "max |Δlogit|", "top-1 agreement", "greedy continuation")
    for check in report.prompts:
        table.add_row(
            escape(check.prompt[:40].replace("\n", "⏎")),
            "yes" if check.same_token_ids else "[red]no[/]",
            f"{check.max_logit_diff:.4f}",
            f"{check.top1_agreement:.0%}",
            "same" if check.greedy_matches else "differs",
        )
    console.print(table)
