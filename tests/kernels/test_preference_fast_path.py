"""DPO on the fast path's pieces (fused 4-bit LoRA layers, forumtune's layer checkpointing, the answer
log-probs through the head in chunks) against plain peft and the full logits, on the CPU: the reference pass switches the adapter off or to the frozen reference adapter, which
the fused layers must follow (they read the active adapter's weights, or fall back to peft's forward)."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from forumtune.config import TrainConfig
from forumtune.kernels.lora_linear import use_fused_lora
from forumtune.preference_batches import REFERENCE_ADAPTER
from forumtune.train.layer_checkpointing import use_layer_checkpointing
from forumtune.train.objectives import DPO
from forumtune.train.precision import prepare_for_qlora
from tests.kernels.test_kernels import SHAPE, load, lora, relative_error
from tests.train.test_preference import make_pairs


@pytest.fixture(scope="module")
def mistral_dir(tmp_path_factory) -> str:
    from transformers import AutoModelForCausalLM, MistralConfig

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("mistral")
    AutoModelForCausalLM.from_config(MistralConfig(**SHAPE)).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def reference_dir(mistral_dir, tmp_path_factory) -> str:
    torch.manual_seed(11)
    path = tmp_path_factory.mktemp("reference")
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM"
    )
    get_peft_model(load(mistral_dir), config).save_pretrained(path)
    return str(path)


def dpo_loss_and_grads(mistral_dir: str, reference: str | None, fused: bool):
    model = lora(prepare_for_qlora(load(mistral_dir, quantized=True), gradient_checkpointing=True))
    if reference is not None:
        model.load_adapter(reference, adapter_name=REFERENCE_ADAPTER, is_trainable=False)
        model.set_adapter("default")
    if fused:
        use_layer_checkpointing(model)
        assert use_fused_lora(model) == 7 * SHAPE["num_hidden_layers"]
    model.train()
    objective = DPO(TrainConfig(method="dpo", beta=0.5), fast_path=fused)  # the chunked head with them
    batch = objective.collate(make_pairs(4, seed=5), 0, torch.device("cpu"))
    loss = objective.loss(model, batch, objective.count(batch))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert grads and all(".default." in name for name in grads)  # the reference adapter stays frozen
    return float(loss.detach()), grads


@pytest.mark.parametrize("with_reference_adapter", [False, True])
def test_dpo_through_fused_lora_layers_equals_plain_peft(mistral_dir, reference_dir, with_reference_adapter):
    reference = reference_dir if with_reference_adapter else None
    plain_loss, plain_grads = dpo_loss_and_grads(mistral_dir, reference, fused=False)
    fused_loss, fused_grads = dpo_loss_and_grads(mistral_dir, reference, fused=True)
    assert fused_loss == pytest.approx(plain_loss, rel=1e-6)
    assert fused_grads.keys() == plain_grads.keys()
    for name in plain_grads:
        assert relative_error(fused_grads[name], plain_grads[name]) < 1e-5, name
