"""`forumtune merge` and `forumtune export` on a run directory, through the real command line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from gguf import GGUFReader
from transformers import AutoTokenizer
from typer.testing import CliRunner, Result

from forumtune.chat_templates import NAMED_TEMPLATES
from forumtune.cli import app
from forumtune.export import llama_runtime
from forumtune.export.errors import ExportError


def forumtune(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def trained_run(tmp_path: Path, llama_base_dir: Path, llama_adapter_dir: Path) -> Path:
    """A config and a run directory as `forumtune train` leaves them: the adapter with its tokenizer."""
    adapter_dir = shutil.copytree(llama_adapter_dir, tmp_path / "runs" / "forum-bot" / "adapter")
    tokenizer = AutoTokenizer.from_pretrained(llama_base_dir)
    tokenizer.chat_template = NAMED_TEMPLATES["mistral"]
    tokenizer.save_pretrained(adapter_dir)
    config = {
        "name": "forum-bot",
        "scrape": {"url": "http://127.0.0.1:9/threads"},
        "model": {"base": str(llama_base_dir)},
        "merge": {"dtype": "float32"},
        "chat": {"system_prompt": "You answer questions about bikes."},
    }
    config_path = tmp_path / "forum-bot.yaml"
    config_path.write_text(yaml.safe_dump(config))
    return config_path


def test_merge_then_export_every_format_with_verify(trained_run: Path) -> None:
    if not llama_runtime.llama_cpp_available():
        pytest.skip("--verify compares logits through llama.cpp's bindings (the llama extra)")
    export_dir = trained_run.parent / "runs" / "forum-bot" / "export"

    merged = forumtune("merge", str(trained_run))
    assert merged.exit_code == 0, merged.output
    exported = forumtune("export", str(trained_run), "--format", "gguf", "--format", "modelfile", "--verify")
    adapter_only = forumtune("export", str(trained_run), "--format", "lora-gguf")

    assert exported.exit_code == 0, exported.output
    assert sorted(path.name for path in export_dir.iterdir()) == [
        "Modelfile",
        "forum-bot-f16.gguf",
        "forum-bot-lora.gguf",
    ]
    assert GGUFReader(export_dir / "forum-bot-f16.gguf").fields["general.name"].contents() == "forum-bot"
    assert (export_dir / "Modelfile").read_text().startswith("FROM ./forum-bot-f16.gguf\n")
    assert 'SYSTEM """You answer questions about bikes."""' in (export_dir / "Modelfile").read_text()
    assert exported.stdout.count("verified") == 1 and "differs" not in exported.stdout
    assert adapter_only.exit_code == 0 and "--lora" in adapter_only.stdout  # how to use it with a base GGUF
    assert "ollama create forum-bot" in exported.stdout


def test_export_before_merge_says_what_to_run(trained_run: Path) -> None:
    result = forumtune("export", str(trained_run), "--format", "gguf")
    assert isinstance(result.exception, ExportError)  # main() prints it as "error: ..." and exits with 2
    assert "merged/config.json not found" in str(result.exception) and "forumtune merge" in str(
        result.exception
    )


def test_unknown_format_is_refused(trained_run: Path) -> None:
    result = forumtune("export", str(trained_run), "--format", "onnx")
    assert result.exit_code == 2 and "--format must be one of" in result.output
