"""Tokenizers of each supported model family, built here from a small vocabulary (no downloads), with
the family's real special tokens, BOS/EOS settings and its own chat template as the hub ships it."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

CORPUS = [
    "How often should I wax my skis? Wax every 3 or 4 days on snow, more in spring slush.",
    "And with a wax iron? Keep it moving, never let it smoke. You answer questions from a ski forum.",
    "Layering for really cold days: merino base layer, fleece, a light puffy, then the shell.",
]

LLAMA2_OWN = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)
LLAMA3_OWN = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
QWEN2_OWN = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
GEMMA_OWN = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)
PHI3_OWN = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + "
    "'<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)

# family: (special tokens, bos, eos, pad, own template or None for the tiny-llama one)
FAMILIES: dict[str, tuple[list[str], str | None, str, str, str | None]] = {
    "mistral": (["<unk>", "<s>", "</s>", "<pad>", "[INST]", "[/INST]"], "<s>", "</s>", "<pad>", None),
    "llama2": (["<unk>", "<s>", "</s>", "<pad>"], "<s>", "</s>", "<pad>", LLAMA2_OWN),
    "llama3": (
        ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "<|begin_of_text|>",
        "<|eot_id|>",
        "<|end_of_text|>",
        LLAMA3_OWN,
    ),
    "chatml": (
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        None,
        "<|im_end|>",
        "<|endoftext|>",
        QWEN2_OWN,
    ),
    "gemma": (
        ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"],
        "<bos>",
        "<eos>",
        "<pad>",
        GEMMA_OWN,
    ),
    "phi3": (
        ["<unk>", "<s>", "</s>", "<|endoftext|>", "<|assistant|>", "<|end|>", "<|system|>", "<|user|>"],
        "<s>",
        "<|endoftext|>",
        "<|endoftext|>",
        PHI3_OWN,
    ),
}


def byte_level_tokenizer(special: list[str], bos: str | None) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    if bos is not None:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokenizer.token_to_id(bos))]
        )
    return tokenizer


def save_family_tokenizer(family: str, target: Path) -> Path:
    """A tokenizer dir for `family` that AutoTokenizer (and forumtune's load_tokenizer) loads."""
    special, bos, eos, pad, own_template = FAMILIES[family]
    target.mkdir(parents=True, exist_ok=True)
    if family in ("mistral", "llama2"):
        for entry in (resources.files("forumtune") / "assets" / "tiny-llama").iterdir():
            (target / entry.name).write_bytes(entry.read_bytes())
        if own_template is not None:
            (target / "chat_template.jinja").write_text(own_template)
        return target
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=byte_level_tokenizer(special, bos),
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        additional_special_tokens=special,
    )
    wrapped.chat_template = own_template
    wrapped.save_pretrained(target)
    return target


def reset(target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
