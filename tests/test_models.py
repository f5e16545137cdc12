"""Loading the base model: the attention implementation each architecture gets."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, Gemma2Config, Qwen2Config

from forumtune.config import ModelConfig
from forumtune.models import load_base_model

SHAPE = {
    "vocab_size": 128,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
}


def saved(config, path) -> str:
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    return str(path)


def test_gemma2_falls_back_to_its_own_attention_with_a_warning(tmp_path):
    path = saved(Gemma2Config(**SHAPE, head_dim=16), tmp_path)
    config = ModelConfig(base=path, load_in_4bit=False, compute_dtype="float32")
    assert config.attn_implementation == "sdpa"  # the default, which transformers refuses for Gemma-2
    with pytest.warns(UserWarning, match="Gemma2ForCausalLM has no SDPA attention"):
        model = load_base_model(config, torch.device("cpu"))
    assert model.config._attn_implementation == "eager"


def test_an_architecture_with_sdpa_keeps_it(tmp_path, recwarn):
    path = saved(Qwen2Config(**SHAPE), tmp_path)
    model = load_base_model(
        ModelConfig(base=path, load_in_4bit=False, compute_dtype="float32"), torch.device("cpu")
    )
    assert model.config._attn_implementation == "sdpa"
    assert not [w for w in recwarn if "SDPA" in str(w.message)]
