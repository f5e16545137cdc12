"""train.split_attention: attention run a group of heads at a time gives the fused kernel's outputs and
gradients, alone and inside the fast path (4-bit base, fused LoRA, offloaded checkpoints, MLP tiles), on
tiny models of the real architectures, with the gradients written into the inputs' memory where nothing
else reads it; and only training passes over long micro-batches take it."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from forumtune.config import load_config
from forumtune.errors import ConfigError
from forumtune.kernels import grouped_attention
from forumtune.kernels.grouped_attention import grouped_causal_attention, heads_per_group
from forumtune.train import split_attention
from forumtune.train.split_attention import split_above_tokens, use_split_attention
from forumtune.train.tiled_mlp import MLPTiling
from tests.conftest import SMOKE_CONFIG
from tests.kernels.test_kernels import ARCHITECTURES, batch, loss_and_lora_grads, relative_error
from tests.train.test_tiled_mlp import TILED_ARCHITECTURES, fast_model

TOKENS = batch()["input_ids"].numel()  # 48


@pytest.mark.parametrize(("query_heads", "kv_heads"), [(8, 2), (8, 8), (6, 6), (4, 1)])
def test_groups_give_the_fused_kernels_output_and_gradients(query_heads, kv_heads):
    torch.manual_seed(0)
    query = torch.randn(2, query_heads, 96, 16, requires_grad=True)
    key, value = (torch.randn(2, kv_heads, 96, 16, requires_grad=True) for _ in range(2))
    grad_out = torch.randn(2, 96, query_heads, 16)
    fused = F.scaled_dot_product_attention(query, key, value, is_causal=True, enable_gqa=True, scale=0.3)
    fused_grads = torch.autograd.grad(fused.transpose(1, 2), (query, key, value), grad_out)
    inputs = [tensor.detach().clone() for tensor in (query, key, value)]
    grouped = grouped_causal_attention(query, key, value, 0.3)
    grouped_grads = torch.autograd.grad(grouped, (query, key, value), grad_out)
    assert grouped.shape == (2, 96, query_heads, 16)
    # leaves are the caller's tensors: their gradients get memory of their own
    assert all(torch.equal(tensor, kept) for tensor, kept in zip((query, key, value), inputs, strict=True))
    assert torch.equal(grouped, fused.transpose(1, 2))
    assert torch.equal(grouped_grads[0], fused_grads[0])
    for grouped_grad, fused_grad in zip(grouped_grads[1:], fused_grads[1:], strict=True):
        # key and value gradients: the group's heads summed in another order than the fused kernel's
        assert torch.allclose(grouped_grad, fused_grad, rtol=0, atol=2e-6)


def projected(leaf: torch.Tensor) -> torch.Tensor:
    """A (batch, seq, heads, head_dim) projection output as attention gets it: (batch, heads, seq,
    head_dim), a view of a tensor only the graph holds."""
    return (leaf * 1).transpose(1, 2)


def leaves(query_heads: int, kv_heads: int) -> list[torch.Tensor]:
    torch.manual_seed(0)
    return [torch.randn(2, 96, heads, 16, requires_grad=True) for heads in (query_heads, kv_heads, kv_heads)]


def sdpa(query, key, value) -> torch.Tensor:
    return F.scaled_dot_product_attention(query, key, value, is_causal=True, enable_gqa=True, scale=0.3)


@pytest.mark.parametrize(("query_heads", "kv_heads"), [(8, 2), (8, 8)])
def test_gradients_are_written_into_the_inputs_memory(query_heads, kv_heads):
    reference = leaves(query_heads, kv_heads)
    grad_out = torch.randn(2, 96, query_heads, 16)
    fused = sdpa(*(leaf.transpose(1, 2) for leaf in reference)).transpose(1, 2)
    fused_grads = torch.autograd.grad(fused, reference, grad_out)
    inputs = [projected(leaf) for leaf in leaves(query_heads, kv_heads)]
    versions = [tensor._version for tensor in inputs]
    grouped = grouped_causal_attention(*inputs, 0.3)
    grads = torch.autograd.grad(grouped, inputs, grad_out)
    for tensor, grad, version in zip(inputs, grads, versions, strict=True):
        assert grad.data_ptr() == tensor.data_ptr() and grad.stride() == tensor.stride()
        assert tensor._version > version  # written through the input's version counter
    assert torch.equal(grads[0].transpose(1, 2), fused_grads[0])
    for grad, fused_grad in zip(grads[1:], fused_grads[1:], strict=True):
        assert torch.allclose(grad.transpose(1, 2), fused_grad, rtol=0, atol=2e-6)


def test_views_of_the_callers_tensors_keep_their_values():
    reference = leaves(8, 2)
    grad_out = torch.randn(2, 96, 8, 16)
    fused = sdpa(*(leaf.transpose(1, 2) for leaf in reference)).transpose(1, 2)
    fused_grads = torch.autograd.grad(fused, reference, grad_out)
    inputs = leaves(8, 2)
    grouped = grouped_causal_attention(*(leaf.transpose(1, 2) for leaf in inputs), 0.3)
    grads = torch.autograd.grad(grouped, inputs, grad_out)
    assert all(torch.equal(leaf, kept) for leaf, kept in zip(inputs, reference, strict=True))
    assert torch.equal(grads[0], fused_grads[0])
    assert all(torch.allclose(g, f, rtol=0, atol=2e-6) for g, f in zip(grads, fused_grads, strict=True))


def test_inputs_overlapping_each_other_get_gradients_of_their_own():
    torch.manual_seed(0)
    x = torch.randn(2, 96, 8, 16, requires_grad=True)
    reference = x.detach().clone().requires_grad_(True)
    grad_out = torch.randn(2, 96, 8, 16)
    fused = sdpa(*(reference.transpose(1, 2),) * 3).transpose(1, 2)
    (fused_grad,) = torch.autograd.grad(fused, reference, grad_out)
    shared = projected(x)  # one tensor as query, key and value: each group reads what others would write
    (grad,) = torch.autograd.grad(grouped_causal_attention(shared, shared, shared, 0.3), shared, grad_out)
    assert grad.data_ptr() != shared.data_ptr()
    assert torch.allclose(grad.transpose(1, 2), fused_grad, rtol=0, atol=2e-6)


@pytest.mark.parametrize("hooks", [False, True])
def test_a_query_another_node_saved_is_never_read_as_its_gradient(hooks):
    """Outside a training step's attention another node may save the query. It reads it correctly when
    its backward runs first; after this backward autograd's version check refuses it (no training step
    has such a node: the attention function is the only reader of its inputs); under saved-tensor hooks,
    which take that check away, the gradients get memory of their own."""
    reference = leaves(8, 2)
    weights = torch.randn(2, 96, 8, 16)
    expected = torch.autograd.grad(
        (sdpa(*(leaf.transpose(1, 2) for leaf in reference)).transpose(1, 2) * weights).sum()
        + (reference[0] * reference[0]).sum(),
        reference,
    )
    hooked = torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t)
    for mul_first in (False, True):
        inputs = leaves(8, 2)
        with hooked if hooks else contextlib.nullcontext():
            query, key, value = (projected(leaf) for leaf in inputs)
            square = (query * query).sum() if mul_first else None
            attention = (grouped_causal_attention(query, key, value, 0.3) * weights).sum()
            loss = attention + (square if mul_first else (query * query).sum())
        if mul_first and not hooks:
            with pytest.raises(RuntimeError, match="modified by an inplace operation"):
                loss.backward()
            continue
        loss.backward()
        for leaf, grad in zip(inputs, expected, strict=True):
            assert torch.allclose(leaf.grad, grad, rtol=0, atol=1e-5)


def test_the_groups_are_a_key_value_head_and_its_query_heads():
    assert heads_per_group(32, 8) == 4  # Mistral, Llama 3: eight groups
    assert heads_per_group(28, 4) == 7  # Qwen2.5-7B
    assert heads_per_group(32, 32) == 4  # no grouped-query attention: four heads at a time
    assert heads_per_group(6, 6) == 2


def counted(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = grouped_attention.HeadGroupedAttention.apply

    def counting(*args):
        calls.append(args[0].shape[2])
        return real(*args)

    monkeypatch.setattr(grouped_attention.HeadGroupedAttention, "apply", counting)
    return calls


def overwritten(monkeypatch) -> list[bool]:
    """Whether each gradient the attention's backward returns is written into its input's memory."""
    written: list[bool] = []
    real = grouped_attention._gradient_buffer

    def recording(tensor, *args):
        target = real(tensor, *args)
        written.append(target is not None and target.data_ptr() == tensor.data_ptr())
        return target

    monkeypatch.setattr(grouped_attention, "_gradient_buffer", recording)
    return written


@pytest.fixture(scope="module", params=TILED_ARCHITECTURES)
def model_dir(request, tmp_path_factory) -> str:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp(request.param)
    AutoModelForCausalLM.from_config(ARCHITECTURES[request.param]()).save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("tiling", [None, MLPTiling(16, 0)])
def test_split_attention_gives_the_fast_paths_loss_and_lora_gradients(model_dir, tiling, monkeypatch):
    reference_loss, reference_grads = loss_and_lora_grads(fast_model(model_dir, tiling))
    model = fast_model(model_dir, tiling)
    layers = model.config.num_hidden_layers
    assert use_split_attention(model, TOKENS - 1) == layers
    calls = counted(monkeypatch)
    in_place = overwritten(monkeypatch)
    loss, grads = loss_and_lora_grads(model)
    assert calls == [24] * layers  # the recompute for the backward, once per layer (its forward has no graph)
    assert in_place == [True] * 3 * layers  # q, k and v's gradients in their own memory, in every layer
    assert loss == pytest.approx(reference_loss, rel=1e-6)
    assert grads.keys() == reference_grads.keys()
    for name in grads:
        assert relative_error(grads[name], reference_grads[name]) <= 1e-5, name  # measured below 1e-6


def test_short_rows_evaluation_and_padded_batches_keep_sdpa(model_dir, monkeypatch):
    model = fast_model(model_dir, None)
    use_split_attention(model, TOKENS)  # 48 tokens is not more than 48
    calls = counted(monkeypatch)
    loss_and_lora_grads(model)
    use_split_attention(model, TOKENS - 1)
    with torch.no_grad():
        model(**batch())
    padded = batch()
    padded["attention_mask"][0, -3:] = 0
    model(**padded).loss.backward()
    assert calls == []


def test_models_it_does_not_apply_to_are_left_alone(tmp_path):
    gemma = AutoModelForCausalLM.from_config(ARCHITECTURES["gemma2"]())
    before = gemma.config._attn_implementation
    assert use_split_attention(gemma, 0) == 0 and gemma.config._attn_implementation == before
    llama = AutoModelForCausalLM.from_config(ARCHITECTURES["llama"]())
    assert use_split_attention(llama, None) == 0 and llama.config._attn_implementation == "sdpa"


def test_the_setting_and_its_threshold():
    assert split_above_tokens("on") == split_attention.AUTO_ABOVE_TOKENS == 8192
    assert split_above_tokens("off") is None
    with pytest.raises(ValueError, match="settled"):
        split_above_tokens("auto")  # the card decides (tests/train/test_plan.py)
    assert load_config(SMOKE_CONFIG).train.split_attention == "auto"
    for value, read in (("off", "off"), ("on", "on"), ("false", "off"), ("true", "on")):
        assert load_config(SMOKE_CONFIG, [f"train.split_attention={value}"]).train.split_attention == read
    with pytest.raises(ConfigError, match="train.split_attention"):
        load_config(SMOKE_CONFIG, ["train.split_attention=sometimes"])


def test_auto_never_splits_on_the_cpu():
    from forumtune.train.loading import settled_for_card

    settled = settled_for_card(load_config(SMOKE_CONFIG), torch.device("cpu")).train
    assert (settled.split_attention, settled.cuda_graphs) == ("off", False)
    on = load_config(SMOKE_CONFIG, ["train.split_attention=on", "train.cuda_graphs=true"])
    assert settled_for_card(on, torch.device("cpu")).train.split_attention == "on"
