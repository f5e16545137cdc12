"""An Ollama Modelfile for the exported GGUF: the chat template in Ollama's Go syntax and the stop tokens.

Ollama does not run Jinja, so the tokenizer's chat template is recognised by the markers it renders and
mapped to the equivalent Go template below. One entry per family, as in chat_templates.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jinja2 import TemplateError
from transformers import AutoTokenizer

from forumtune.export.errors import ExportError

SAMPLE_CONVERSATION = [
    {"role": "system", "content": "SYSTEM-TEXT"},
    {"role": "user", "content": "USER-ONE"},
    {"role": "assistant", "content": "ASSISTANT-ONE"},
    {"role": "user", "content": "USER-TWO"},
]


@dataclass(frozen=True)
class ChatFamily:
    name: str
    markers: tuple[str, ...]  # all rendered by templates of this family
    go_template: str  # {eos} is replaced by the tokenizer's end-of-sequence token
    stop: tuple[str, ...]


INST_TEMPLATE = """{{{{- $first := true }}}}
{{{{- range .Messages }}}}
{{{{- if eq .Role "user" }}}}[INST] {{{{ if and $first $.System }}}}{system}{{{{ end }}}}{{{{ .Content }}}}{close}{{{{ $first = false }}}}
{{{{- else if eq .Role "assistant" }}}} {{{{ .Content }}}}{assistant_end}
{{{{- end }}}}
{{{{- end }}}}"""

CHAT_FAMILIES = [
    ChatFamily(
        "llama2",
        ("[INST]", "<<SYS>>"),
        INST_TEMPLATE.format(
            system="<<SYS>>\n{{ $.System }}\n<</SYS>>\n\n", assistant_end=" {eos}", close=" [/INST]"
        ),
        ("[INST]", "<<SYS>>"),
    ),
    ChatFamily(  # v3 vocabularies: no space before [/INST] (the sample's last user turn shows it)
        "mistral_v3",
        ("[INST]", "USER-TWO[/INST]"),
        INST_TEMPLATE.format(system="{{ $.System }}\n\n", assistant_end="{eos}", close="[/INST]"),
        ("[INST]",),
    ),
    ChatFamily(
        "mistral",
        ("[INST]",),
        INST_TEMPLATE.format(system="{{ $.System }}\n\n", assistant_end="{eos}", close=" [/INST]"),
        ("[INST]",),
    ),
    ChatFamily(
        "llama3",
        ("<|start_header_id|>", "<|eot_id|>"),
        "{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>\n{{- end }}\n"
        '{{- range .Messages }}\n{{- if ne .Role "system" }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n'
        "{{ .Content }}<|eot_id|>\n{{- end }}\n{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n",
        ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    ),
    ChatFamily(
        "chatml",
        ("<|im_start|>", "<|im_end|>"),
        "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}\n"
        '{{- range .Messages }}\n{{- if ne .Role "system" }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n'
        "{{ end }}\n{{- end }}<|im_start|>assistant\n",
        ("<|im_start|>", "<|im_end|>"),
    ),
    ChatFamily(  # no system role: the system prompt opens the first user turn, as chat_templates.py GEMMA does
        "gemma",
        ("<start_of_turn>", "<end_of_turn>"),
        '{{- $first := true }}\n{{- range .Messages }}\n{{- if eq .Role "user" }}<start_of_turn>user\n'
        "{{ if and $first $.System }}{{ $.System }}\n\n{{ end }}{{ .Content }}<end_of_turn>\n{{ $first = false }}\n"
        '{{- else if eq .Role "assistant" }}<start_of_turn>model\n{{ .Content }}<end_of_turn>\n'
        "{{- end }}\n{{- end }}<start_of_turn>model\n",
        ("<start_of_turn>", "<end_of_turn>"),
    ),
    ChatFamily(
        "phi3",
        ("<|user|>", "<|end|>", "<|assistant|>"),
        "{{- if .System }}<|system|>\n{{ .System }}<|end|>\n{{ end }}\n"
        '{{- range .Messages }}\n{{- if ne .Role "system" }}<|{{ .Role }}|>\n{{ .Content }}<|end|>\n'
        "{{ end }}\n{{- end }}<|assistant|>\n",
        ("<|user|>", "<|end|>", "<|assistant|>"),
    ),
]


def write_modelfile(
    model_dir: Path,
    gguf_path: Path,
    out_path: Path,
    system_prompt: str | None = None,
    temperature: float | None = None,
) -> Path:
    """Write an Ollama Modelfile next to the GGUF (FROM is relative, so the pair can be moved together)."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    family = chat_family_of(tokenizer, model_dir)
    eos = tokenizer.eos_token or ""
    template = family.go_template.replace("{eos}", eos)
    if template_starts_with_bos(tokenizer) and tokenizer.bos_token not in family.markers:
        # (SmolLM2's tokenizer names <|im_start|>, the turn opener the Go template writes, as its BOS)
        template = tokenizer.bos_token + template
    lines = [f"FROM ./{Path(gguf_path).name}", "", f'TEMPLATE """{template}"""', ""]
    lines += [f"PARAMETER stop {quoted(token)}" for token in stop_tokens(family, eos)]
    if temperature is not None:
        lines.append(f"PARAMETER temperature {temperature}")
    if system_prompt:
        lines += ["", f'SYSTEM """{system_prompt}"""']
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out_path


def family_names() -> str:
    return ", ".join(family.name for family in CHAT_FAMILIES)


def rendered_sample(tokenizer: AutoTokenizer, model_dir: Path) -> str:
    if not tokenizer.chat_template:
        raise ExportError(
            f"the tokenizer in {model_dir} has no chat template, so the Modelfile cannot have one; "
            f"set build.chat_template (one of {family_names()}), retrain or re-merge, and export again."
        )
    try:
        return tokenizer.apply_chat_template(SAMPLE_CONVERSATION, tokenize=False, add_generation_prompt=True)
    except TemplateError:  # raise_exception() in the template: some refuse a system turn
        return tokenizer.apply_chat_template(
            SAMPLE_CONVERSATION[1:], tokenize=False, add_generation_prompt=True
        )


def chat_family_of(tokenizer: AutoTokenizer, model_dir: Path) -> ChatFamily:
    rendered = rendered_sample(tokenizer, model_dir)
    for family in CHAT_FAMILIES:
        if all(marker in rendered for marker in family.markers):
            return family
    raise ExportError(
        f"the chat template in {model_dir} is not one the Modelfile writer knows; set build.chat_template to one "
        f"of {family_names()} and retrain, or write the TEMPLATE by hand."
    )


def template_starts_with_bos(tokenizer: AutoTokenizer) -> bool:
    """The template writes BOS itself and the tokenizer does not add it: Ollama must see it in the prompt."""
    bos = tokenizer.bos_token
    if not bos:
        return False
    rendered = tokenizer.apply_chat_template(SAMPLE_CONVERSATION[1:2], tokenize=False)
    adds_bos_itself = tokenizer("x").input_ids[:1] == [tokenizer.bos_token_id]
    return rendered.startswith(bos) and not adds_bos_itself


def stop_tokens(family: ChatFamily, eos: str) -> list[str]:
    return list(dict.fromkeys([*family.stop, *([eos] if eos else [])]))


def quoted(token: str) -> str:
    return '"' + token.replace("\\", "\\\\").replace('"', '\\"') + '"'
