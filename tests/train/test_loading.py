import math

import bitsandbytes as bnb
import pytest
import torch

from forumtune.config import load_config
from forumtune.train.loading import load_for_training
from tests.conftest import SMOKE_CONFIG
from tests.train.conftest import save_tiny_model

CPU = torch.device("cpu")
PROJECTIONS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def config_for(model_dir, *overrides):
    return load_config(
        SMOKE_CONFIG,
        [f"model.base={model_dir}", "model.compute_dtype=float32", "lora.r=4", "lora.alpha=8", *overrides],
    )


def lora_targets(model):
    return {name.split(".")[-1] for name, module in model.named_modules() if hasattr(module, "lora_A")}


@pytest.mark.parametrize(
    "family, targets",
    [
        ("mistral", PROJECTIONS),
        ("llama", PROJECTIONS),
        ("qwen2", PROJECTIONS),
        ("gemma", PROJECTIONS),
        ("phi3", {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}),  # Phi-3 fuses its projections
    ],
)
def test_every_family_loads_in_4bit_nf4_with_lora_on_all_linear_layers(family, targets, tmp_path):
    model = load_for_training(config_for(save_tiny_model(family, tmp_path / family)), CPU)
    linear4 = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(linear4) == 2 * len(targets)  # every projection of both layers; the head stays unquantized
    assert {m.weight.quant_state.quant_type for m in linear4} == {"nf4"}
    assert all(m.weight.quant_state.nested for m in linear4)
    assert lora_targets(model) == targets


def test_fp4_without_double_quant_8bit_and_plain_bases(tiny_mistral):
    fp4 = load_for_training(config_for(tiny_mistral, "model.quant_type=fp4", "model.double_quant=false"), CPU)
    states = [m.weight.quant_state for m in fp4.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert states and all(s.quant_type == "fp4" and not s.nested for s in states)
    int8 = load_for_training(
        config_for(tiny_mistral, "model.load_in_4bit=false", "model.load_in_8bit=true"), CPU
    )
    assert sum(isinstance(m, bnb.nn.Linear8bitLt) for m in int8.modules()) == 14
    plain = load_for_training(
        config_for(tiny_mistral, "model.load_in_4bit=false", "model.compute_dtype=bfloat16"), CPU
    )
    assert not any(isinstance(m, bnb.nn.Linear4bit | bnb.nn.Linear8bitLt) for m in plain.modules())
    q_proj = plain.base_model.model.model.layers[0].self_attn.q_proj
    assert q_proj.base_layer.weight.dtype == torch.bfloat16 and not q_proj.base_layer.weight.requires_grad


def test_rslora_scales_by_square_root_of_rank_and_dora_learns_magnitudes(tiny_mistral):
    rslora = load_for_training(config_for(tiny_mistral, "lora.use_rslora=true"), CPU)
    q_proj = rslora.base_model.model.model.layers[0].self_attn.q_proj
    assert q_proj.scaling["default"] == pytest.approx(8 / math.sqrt(4))
    dora = load_for_training(config_for(tiny_mistral, "lora.use_dora=true"), CPU)
    magnitudes = [n for n, p in dora.named_parameters() if "lora_magnitude_vector" in n and p.requires_grad]
    assert len(magnitudes) == 14


def test_checkpointing_on_and_offloaded_give_the_same_gradients_as_off(tiny_mistral):
    batch = {"input_ids": torch.arange(2, 34).reshape(2, 16), "labels": torch.arange(2, 34).reshape(2, 16)}
    grads = {}
    for mode in ("false", "true", "offload"):
        torch.manual_seed(0)  # the same LoRA initialisation each time
        model = load_for_training(
            config_for(
                tiny_mistral,
                "model.load_in_4bit=false",
                "lora.dropout=0",
                f"train.gradient_checkpointing={mode}",
            ),
            CPU,
        )
        layers = model.base_model.model.model.layers
        assert all(layer.gradient_checkpointing for layer in layers) == (mode != "false")
        model(**batch).loss.backward()
        grads[mode] = torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])
    assert torch.allclose(grads["true"], grads["false"], atol=1e-6)
    assert torch.allclose(grads["offload"], grads["false"], atol=1e-6)


def test_init_adapter_continues_a_saved_adapter(tiny_mistral, tmp_path):
    first = load_for_training(config_for(tiny_mistral), CPU)
    with torch.no_grad():
        for name, parameter in first.named_parameters():
            if "lora_B" in name:
                parameter.fill_(0.25)  # a trained adapter: B is no longer zero
    first.save_pretrained(tmp_path / "adapter")
    continued = load_for_training(
        config_for(tiny_mistral, f"train.init_adapter={tmp_path / 'adapter'}", "lora.r=8"), CPU
    )
    lora_b = [p for n, p in continued.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.requires_grad and torch.all(p == 0.25) for p in lora_b)
    assert lora_b[0].shape[1] == 4  # the adapter's own rank wins over lora.r
