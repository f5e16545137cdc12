"""The fast paths against their plain references, on the CPU with tiny models of real architectures
(liger's Triton kernels need a GPU: benchmarks/train_throughput.py checks them there)."""

from __future__ import annotations

import pytest
import torch
from bitsandbytes.nn import Linear4bit
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from torch.utils.checkpoint import checkpoint
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    BitsAndBytesConfig,
    Gemma2Config,
    LlamaConfig,
    MistralConfig,
    Qwen2Config,
)

from forumtune.cpu_layout import use_trainable_layout
from forumtune.kernels.liger import apply_liger_kernels
from forumtune.train.layer_checkpointing import use_layer_checkpointing
from forumtune.train.precision import enable_checkpointing, prepare_for_qlora

SHAPE = {
    "vocab_size": 256,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128,
    "initializer_range": 0.05,
}
LLAMA3_ROPE = {  # Llama 3.1's frequency-dependent rope scaling
    "rope_type": "llama3",
    "rope_theta": 500_000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}
ARCHITECTURES = {
    "llama": lambda: LlamaConfig(**SHAPE),
    "llama3": lambda: LlamaConfig(**SHAPE, rope_parameters=LLAMA3_ROPE),
    "mistral": lambda: MistralConfig(**SHAPE),
    "qwen2": lambda: Qwen2Config(**SHAPE),  # biases on q, k and v
    # head_dim wider than hidden / heads, GeGLU, four (1 + w) norms per layer, soft-capped attention scores
    # and logits, sliding-window layers, the output head tied to the embedding
    "gemma2": lambda: Gemma2Config(
        **SHAPE, head_dim=32, query_pre_attn_scalar=32, sliding_window=16, tie_word_embeddings=True
    ),
}


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def model_dir(request, tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(ARCHITECTURES[request.param]())
    with torch.no_grad():  # biases and norms start at 0 or 1; random values show a path that drops them
        for name, parameter in model.named_parameters():
            if parameter.dim() == 1:
                parameter.add_(torch.randn_like(parameter), alpha=0.1)
    path = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(path)
    return str(path)


def batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(3, 256, (2, 24), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[:, :6] = -100
    return {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids)}


def lora(model, dropout: float = 0.0):
    torch.manual_seed(7)
    peft_model = get_peft_model(
        model,
        LoraConfig(
            r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear", task_type="CAUSAL_LM"
        ),
    )
    for name, parameter in peft_model.named_parameters():  # B starts at zero; make every gradient non-trivial
        if "lora_B" in name:
            torch.nn.init.normal_(
                parameter, std=0.05, generator=torch.Generator().manual_seed(hash(name) % 2**31)
            )
    return peft_model


def loss_and_lora_grads(model, seed: int = 3) -> tuple[float, dict[str, torch.Tensor]]:
    model.train()
    torch.manual_seed(seed)
    loss = model(**batch()).loss
    loss.backward()
    return float(loss.detach()), {
        n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None
    }


def load(model_dir: str, quantized: bool = False):
    kwargs = {"dtype": torch.float32}
    if quantized:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32,
        )
        kwargs["device_map"] = {"": "cpu"}
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    model.config.use_cache = False
    return model


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("offload", [True, False])
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_layer_checkpointing_gives_the_gradients_of_no_checkpointing(model_dir, dropout, offload):
    reference = lora(load(model_dir), dropout)
    ref_loss, ref_grads = loss_and_lora_grads(reference)

    model = load(model_dir)
    enable_checkpointing(model)
    model.enable_input_require_grads()
    model = lora(model, dropout)
    assert use_layer_checkpointing(model, offload=offload) >= SHAPE["num_hidden_layers"]
    loss, grads = loss_and_lora_grads(model)

    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert grads.keys() == ref_grads.keys() and len(grads) == 7 * 2 * SHAPE["num_hidden_layers"]
    for name in grads:  # dropout masks are replayed in the recompute, so they agree exactly too
        assert relative_error(grads[name], ref_grads[name]) < 1e-5, name


def test_layer_checkpointing_keeps_no_leaf_of_the_embedding_output_through_the_backward(model_dir):
    """transformers' checkpointing makes the frozen embedding's output a leaf that requires gradients, one
    hidden-state-sized tensor autograd would hold until the backward ends; our layers need none."""
    model = load(model_dir)
    enable_checkpointing(model)
    model = lora(model)
    embedded: list[torch.Tensor] = []
    model.get_input_embeddings().register_forward_hook(lambda module, args, out: embedded.append(out))
    use_layer_checkpointing(model)
    model.train()
    loss = model(**batch()).loss

    assert not embedded[0].requires_grad
    assert all(leaf.shape != embedded[0].shape for leaf in autograd_leaves(loss))
    loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "lora_" in n)


def autograd_leaves(tensor: torch.Tensor) -> list[torch.Tensor]:
    """The tensors the graph behind `tensor` accumulates gradients into."""
    leaves, seen, stack = [], set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if hasattr(node, "variable"):
            leaves.append(node.variable)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return leaves


def test_offloaded_checkpointing_matches_torch_checkpoint_on_a_plain_function():
    from forumtune.train.layer_checkpointing import offloaded_checkpoint

    weight = torch.randn(8, 8, requires_grad=True)
    x = torch.randn(4, 8, requires_grad=True)

    def layer(h):
        return torch.nn.functional.dropout(torch.tanh(h @ weight), p=0.3, training=True)

    torch.manual_seed(5)
    checkpoint(layer, x, use_reentrant=False).sum().backward()
    expected = weight.grad.clone(), x.grad.clone()
    weight.grad, x.grad = None, None
    torch.manual_seed(5)
    offloaded_checkpoint(layer, x).sum().backward()
    assert torch.allclose(weight.grad, expected[0]) and torch.allclose(x.grad, expected[1])


def test_prepare_for_qlora_keeps_the_compute_dtype_and_the_same_gradients(model_dir):
    reference = lora(
        prepare_model_for_kbit_training(
            load(model_dir, quantized=True),
            use_gradient_checkpointing=True,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    )
    ref_loss, ref_grads = loss_and_lora_grads(reference)

    model = load(model_dir, quantized=True)
    model = lora(prepare_for_qlora(model, gradient_checkpointing=True))
    loss, grads = loss_and_lora_grads(model)

    assert any(isinstance(m, Linear4bit) for m in model.modules())
    frozen = {
        p.dtype for n, p in model.named_parameters() if not p.requires_grad and p.dtype.is_floating_point
    }
    assert frozen == {torch.float32}  # the load dtype, not an upcast: a bf16 load stays bf16
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    for name in grads:
        assert relative_error(grads[name], ref_grads[name]) < 1e-5, name


def test_prepare_for_qlora_leaves_a_bf16_model_in_bf16_where_peft_upcasts(model_dir):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16)
    prepare_for_qlora(model, gradient_checkpointing=False)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not any(p.requires_grad for p in model.parameters())


def test_liger_is_not_applied_without_a_gpu(model_dir):
    if torch.cuda.is_available():
        pytest.skip("this checks the CPU fallback")
    model = load(model_dir)
    assert apply_liger_kernels(model) == []


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_fused_lora_gives_peft_loss_and_gradients_on_a_4bit_model(model_dir, dropout):
    from forumtune.kernels.lora_linear import use_fused_lora

    reference = lora(prepare_for_qlora(load(model_dir, quantized=True), gradient_checkpointing=True), dropout)
    ref_loss, ref_grads = loss_and_lora_grads(reference)

    model = load(model_dir, quantized=True)
    model = lora(prepare_for_qlora(model, gradient_checkpointing=True), dropout)
    use_layer_checkpointing(model)
    assert use_fused_lora(model) == 7 * SHAPE["num_hidden_layers"]
    loss, grads = loss_and_lora_grads(model)

    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert grads.keys() == ref_grads.keys() and len(grads) == 7 * 2 * SHAPE["num_hidden_layers"]
    for name in grads:  # the same dropout masks: the fused path draws them in the same order
        assert relative_error(grads[name], ref_grads[name]) < 1e-5, name


def test_fused_lora_layer_in_bf16_agrees_with_peft_within_bf16_rounding():
    from forumtune.kernels.lora_linear import use_fused_lora

    def layer_and_grads(fused: bool):
        torch.manual_seed(11)
        base = torch.nn.Sequential(
            Linear4bit(
                96, 160, bias=True, compute_dtype=torch.bfloat16, quant_type="nf4", compress_statistics=True
            )
        )
        base[0].weight.data.normal_(std=0.05)
        base[0].bias.data.normal_(std=0.05)
        base = base.to("cpu")  # bitsandbytes quantizes on the move to a device
        assert base[0].weight.dtype == torch.uint8
        base.is_loaded_in_4bit = True  # what peft looks at to pick its lora.Linear4bit
        peft_model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["0"]))
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(parameter, std=0.05)
        if fused:
            assert use_fused_lora(peft_model) == 1
        x = torch.randn(
            3, 40, 96, generator=torch.Generator().manual_seed(2), dtype=torch.bfloat16, requires_grad=True
        )
        out = peft_model(x)
        (out.float() ** 2).mean().backward()
        grads = {n: p.grad.clone() for n, p in peft_model.named_parameters() if p.grad is not None}
        return out.detach().float(), x.grad.float(), grads

    out, x_grad, grads = layer_and_grads(fused=True)
    ref_out, ref_x_grad, ref_grads = layer_and_grads(fused=False)
    assert out.dtype == ref_out.dtype and out.shape == ref_out.shape == (3, 40, 160)
    assert relative_error(out, ref_out) < 1e-2
    assert relative_error(x_grad, ref_x_grad) < 1e-2  # measured 3e-3 (bf16 epsilon 3.9e-3)
    assert grads.keys() == ref_grads.keys() and len(grads) == 2
    for name in grads:
        assert grads[name].dtype == torch.float32
        assert relative_error(grads[name], ref_grads[name]) < 1e-2, name


def test_fused_lora_falls_back_where_it_does_not_apply(model_dir, cpu_layout):
    from forumtune.kernels.lora_linear import use_fused_lora

    plain = lora(prepare_for_qlora(load(model_dir, quantized=True), gradient_checkpointing=False))
    use_trainable_layout(plain)  # the reference in the layout the fused path keeps (it trains)
    fused = lora(prepare_for_qlora(load(model_dir, quantized=True), gradient_checkpointing=False))
    use_fused_lora(fused)
    assert use_fused_lora(fused) == 0  # already fused: nothing is wrapped twice
    assert fused.state_dict().keys() == plain.state_dict().keys()  # the adapter format is untouched
    ids = batch()["input_ids"]
    with torch.no_grad():
        for model in (plain, fused):
            model.eval()
        assert torch.allclose(fused(input_ids=ids).logits, plain(input_ids=ids).logits, atol=1e-5)
        with fused.disable_adapter(), plain.disable_adapter():  # the base alone, through peft's own path
            assert torch.allclose(fused(input_ids=ids).logits, plain(input_ids=ids).logits, atol=1e-5)
        one_token = ids[:, :1]  # decoding: bitsandbytes' gemv path
        assert torch.allclose(fused(input_ids=one_token).logits, plain(input_ids=one_token).logits, atol=1e-5)


def test_the_recompute_skips_the_down_projection_whose_output_nobody_reads(model_dir, monkeypatch):
    from forumtune.kernels import lora_linear

    def run(skip: bool) -> tuple[int, float, dict[str, torch.Tensor]]:
        model = lora(prepare_for_qlora(load(model_dir, quantized=True), gradient_checkpointing=True))
        use_layer_checkpointing(model)
        lora_linear.use_fused_lora(model, lora_linear.FusedLoRA(skip_unread_outputs=skip))
        calls = []
        real = lora_linear.dequantize_weight
        monkeypatch.setattr(lora_linear, "dequantize_weight", lambda *a: calls.append(1) or real(*a))
        loss, grads = loss_and_lora_grads(model)
        monkeypatch.setattr(lora_linear, "dequantize_weight", real)
        return len(calls), loss, grads

    skipped, loss, grads = run(True)
    full, ref_loss, ref_grads = run(False)
    layers = SHAPE["num_hidden_layers"]
    # forward, recompute and backward dequantize each of the 7 projections, but for the first layer's q, k
    # and v in the backward: the frozen embedding wants no gradient
    assert full == 3 * 7 * layers - 3
    # the recompute leaves out one matmul per layer where nothing in the backward reads its output: not in
    # Gemma-2, which normalises the down projection's output before the residual add (the norm reads it)
    ends_in_down_proj = AutoConfig.from_pretrained(model_dir).model_type != "gemma2"
    assert skipped == full - (layers if ends_in_down_proj else 0)
    assert loss == ref_loss
    for name in grads:
        assert relative_error(grads[name], ref_grads[name]) < 1e-6, name


def test_liger_gets_the_mlp_kernel_under_the_name_each_family_takes():
    from forumtune.kernels.liger import liger_options

    # the signatures of liger-kernel 0.8's apply_liger_kernel_to_llama and apply_liger_kernel_to_gemma2
    def to_llama(
        rope=True,
        cross_entropy=False,
        fused_linear_cross_entropy=True,
        rms_norm=True,
        swiglu=True,
        model=None,
    ):
        pass

    def to_gemma2(
        rope=True, cross_entropy=False, fused_linear_cross_entropy=True, rms_norm=True, geglu=True, model=None
    ):
        pass

    llama, gemma2 = liger_options(to_llama, fused_loss=True), liger_options(to_gemma2, fused_loss=False)
    assert llama == {
        "rope": True,
        "rms_norm": True,
        "cross_entropy": False,
        "fused_linear_cross_entropy": True,
        "swiglu": True,
    }
    assert gemma2 == {
        "rope": True,
        "rms_norm": True,
        "cross_entropy": False,
        "fused_linear_cross_entropy": False,
        "geglu": True,
    }
    to_gemma2(**gemma2)  # what apply_liger_kernels passes is accepted
