"""The benchmark's model presets: each family's shape has the real model's parameter count, and the random
checkpoint written for it loads as that architecture."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_common as bc

# the published parameter counts (the model cards' safetensors totals)
PARAMETERS = {
    "mistral-7b": 7_241_732_096,
    "llama-3.1-8b": 8_030_261_248,
    "qwen2.5-7b": 7_615_616_512,
    "gemma-2-9b": 9_241_705_984,
}


@pytest.mark.parametrize("preset", sorted(PARAMETERS))
def test_each_preset_has_the_real_models_parameter_count(preset):
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(bc.model_config(bc.PRESETS[preset]))
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS[preset]


def test_the_tiny_presets_load_as_their_architecture(tmp_path):
    loaded = {}
    for preset in ("tiny-llama3", "tiny-qwen2", "tiny-gemma2"):
        bc.ensure_model(tmp_path / preset, bc.PRESETS[preset])
        loaded[preset] = AutoModelForCausalLM.from_pretrained(tmp_path / preset)
    llama, qwen, gemma = loaded.values()
    assert type(llama).__name__ == "LlamaForCausalLM"
    assert llama.config.rope_parameters["rope_type"] == "llama3"
    assert type(qwen).__name__ == "Qwen2ForCausalLM"
    assert qwen.model.layers[0].self_attn.q_proj.bias.abs().sum() > 0  # random biases, not zeros
    assert type(gemma).__name__ == "Gemma2ForCausalLM"
    assert gemma.lm_head.weight is gemma.model.embed_tokens.weight  # tied: written once, shared on load
    assert gemma.config.attn_logit_softcapping == 50.0 and gemma.config.final_logit_softcapping == 30.0
    assert not any(gemma.model.norm.weight)  # Gemma's norms scale by 1 + w: zeros are the identity
    assert all(llama.model.norm.weight == 1)


def test_another_preset_replaces_the_model_in_the_same_dir(tmp_path):
    bc.ensure_model(tmp_path, bc.PRESETS["tiny-qwen2"])
    assert bc.ensure_model(tmp_path, bc.PRESETS["tiny-qwen2"])["reused"]
    bc.ensure_model(tmp_path, bc.PRESETS["tiny-gemma2"])
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(model).__name__ == "Gemma2ForCausalLM"
    assert len(list(tmp_path.glob("*.safetensors"))) == 1  # the Qwen2 shards are gone


def test_a_model_larger_than_the_free_disk_is_refused_before_writing(tmp_path):
    with pytest.raises(SystemExit, match="pass the same --model-dir"):
        bc.check_disk_space(tmp_path, 10**18)
