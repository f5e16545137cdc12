"""The chunked answer log-probs (kernels/answer_log_probs.py) against their plain reference, the model's
full logits: the log-probs and the gradients (hidden states, the head's weight and bias, every trainable
weight of a model, LoRA's) agree within 1e-5 in fp32, with tied and untied embeddings, packed or not,
in the policy's pass and the reference's, and the full logits never exist on the chunked path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM

from forumtune.config import TrainConfig
from forumtune.kernels import answer_log_probs
from forumtune.kernels.answer_log_probs import chunked_answer_log_probs
from forumtune.preference_batches import (
    collate_pairs,
    plain_output_head,
    reference_weights,
    sequence_log_probs,
)
from forumtune.train.objectives import objective_for
from tests.kernels.test_kernels import relative_error
from tests.train.test_preference import PAD, VOCAB, make_pairs, tiny_llama, with_random_lora

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Chunks of 5 tokens, so that every test crosses chunk boundaries and ends on a partial chunk."""
    monkeypatch.setattr(answer_log_probs, "CHUNK_TOKENS", 5)


DEVICES = pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
        ),
    ],
)


@DEVICES
def test_log_probs_and_gradients_equal_the_full_logits(device):
    torch.manual_seed(0)
    head = torch.nn.Linear(16, VOCAB, bias=True, device=device)
    hidden = torch.randn(23, 16, requires_grad=True, device=device)
    targets = torch.randint(0, VOCAB, (23,), device=device)
    upstream = torch.randn(23, device=device)

    chunked = chunked_answer_log_probs(hidden, head, targets)
    (chunked * upstream).sum().backward()
    got = [hidden.grad.clone(), head.weight.grad.clone(), head.bias.grad.clone()]
    for tensor in (hidden, head.weight, head.bias):
        tensor.grad = None
    full = F.log_softmax(head(hidden), dim=-1).gather(-1, targets[:, None]).squeeze(-1)
    (full * upstream).sum().backward()
    expected = [hidden.grad, head.weight.grad, head.bias.grad]

    assert chunked.dtype == torch.float32
    assert (chunked - full).abs().max() < 1e-5
    for name, a, b in zip(("hidden", "weight", "bias"), got, expected):
        assert relative_error(a, b) < 1e-5, name


def test_without_gradients_nothing_is_kept_for_a_backward():
    """The reference pass: under no_grad the result is a plain tensor, equal to the one with gradients."""
    torch.manual_seed(1)
    head = torch.nn.Linear(16, VOCAB, bias=False)
    hidden, targets = torch.randn(12, 16), torch.randint(0, VOCAB, (12,))
    with torch.no_grad():
        reference = chunked_answer_log_probs(hidden, head, targets)
    assert not reference.requires_grad
    assert torch.equal(reference, chunked_answer_log_probs(hidden, head, targets).detach())


def llama(tied: bool) -> LlamaForCausalLM:
    model = tiny_llama(seed=2, tie_word_embeddings=tied)
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tied
    return model


def log_probs_and_gradients(model, batch, chunked: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    answer_head = chunked_answer_log_probs if chunked else None
    sums, _ = sequence_log_probs(model, batch, answer_head=answer_head)
    (sums * torch.linspace(-1, 2, sums.shape[0])).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return sums.detach(), grads


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("pack_to", [None, 24], ids=["padded", "packed"])
def test_a_whole_trainable_model_gets_the_same_log_probs_and_gradients(tied, pack_to):
    """Every weight trained, the head's too (with tied embeddings its gradient adds to the embedding's)."""
    model = llama(tied)
    model.train()
    batch = collate_pairs(make_pairs(5, seed=3), PAD, CPU, pack_to=pack_to)
    head_outputs = []
    model.lm_head.register_forward_hook(lambda module, args, output: head_outputs.append(output.shape[-1]))
    full, full_grads = log_probs_and_gradients(model, batch, chunked=False)
    chunked, chunked_grads = log_probs_and_gradients(model, batch, chunked=True)
    assert head_outputs == [VOCAB, 32]  # the chunked pass's head passed the hidden states through
    assert (chunked - full).abs().max() < 1e-5
    assert chunked_grads.keys() == full_grads.keys() and "lm_head.weight" in full_grads or tied
    for name in full_grads:
        assert relative_error(chunked_grads[name], full_grads[name]) < 1e-5, name


def lora_model(tied: bool, modules_to_save: list[str] | None = None) -> torch.nn.Module:
    return with_random_lora(llama(tied), modules_to_save=modules_to_save)


def dpo_loss_and_gradients(model, fast_path: bool, pack_to: int | None):
    objective = objective_for(TrainConfig(method="dpo", beta=0.5), fast_path=fast_path, pack_to=pack_to)
    batch = objective.collate(make_pairs(6, seed=4), PAD, CPU)
    model.zero_grad(set_to_none=True)
    loss = objective.loss(model, batch, objective.count(batch))
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return float(loss.detach()), grads


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("pack_to", [None, 24], ids=["padded", "packed"])
def test_dpo_through_the_chunked_head_equals_the_full_logits(tied, pack_to):
    """LoRA on every linear layer but the head (peft's all-linear leaves the output layer alone, which the
    chunked path needs: it reads the head's plain weight), the reference pass with the adapter off."""
    model = lora_model(tied)
    assert plain_output_head(model) is model.base_model.model.lm_head
    full_loss, full_grads = dpo_loss_and_gradients(model, fast_path=False, pack_to=pack_to)
    chunked_loss, chunked_grads = dpo_loss_and_gradients(model, fast_path=True, pack_to=pack_to)
    assert chunked_loss == pytest.approx(full_loss, abs=1e-5)
    assert chunked_grads.keys() == full_grads.keys() and all("lora_" in name for name in full_grads)
    for name in full_grads:
        assert relative_error(chunked_grads[name], full_grads[name]) < 1e-5, name
    batch = collate_pairs(make_pairs(3, seed=5), PAD, CPU, pack_to=pack_to)
    with reference_weights(model):
        reference_full, _ = sequence_log_probs(model, batch)
        reference_chunked, _ = sequence_log_probs(model, batch, answer_head=chunked_answer_log_probs)
    assert (reference_chunked - reference_full).abs().max() < 1e-5


def test_a_head_trained_in_full_reads_the_full_logits():
    """lora.modules_to_save=[lm_head] wraps the head: the loss falls back to the model's own logits."""
    model = lora_model(tied=False, modules_to_save=["lm_head"])
    assert plain_output_head(model) is None
    full_loss, full_grads = dpo_loss_and_gradients(model, fast_path=False, pack_to=None)
    fast_loss, fast_grads = dpo_loss_and_gradients(model, fast_path=True, pack_to=None)
    assert fast_loss == full_loss and any("lm_head" in name for name in fast_grads)
    assert all(torch.equal(fast_grads[name], full_grads[name]) for name in full_grads)


@DEVICES
def test_under_bf16_autocast_the_head_runs_in_bf16_as_the_models_own_would(device):
    """The fast path's autocast: each chunk's matmul in bf16 like the model's head, the log-softmax in fp32,
    so the sums agree with the full bf16 logits' and differ from fp32 ones by bf16's rounding."""
    model = lora_model(tied=False).to(device)
    batch = collate_pairs(make_pairs(4, seed=6), PAD, torch.device(device))
    with torch.no_grad():
        in_fp32, _ = sequence_log_probs(model, batch, answer_head=chunked_answer_log_probs)
        with torch.autocast(device, dtype=torch.bfloat16):
            full, _ = sequence_log_probs(model, batch)
            chunked, _ = sequence_log_probs(model, batch, answer_head=chunked_answer_log_probs)
    assert chunked.dtype == full.dtype == torch.float32
    if device == "cpu":
        assert (chunked - full).abs().max() < 1e-5
        assert (chunked - in_fp32).abs().max() > 1e-4
    else:  # cuBLAS may sum a chunk's products in another order than the whole's: a bf16 rounding apart
        assert (chunked - full).abs().max() < 5e-3 * full.abs().max()


def test_families_that_change_the_logits_after_the_head_read_the_full_logits():
    """Gemma 2's soft-capping (tanh(logits / cap) · cap) happens after the head: skipping the head would
    cap the hidden states instead."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    def gemma2(cap):
        config = Gemma2Config(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            final_logit_softcapping=cap,
            pad_token_id=PAD,
        )
        return Gemma2ForCausalLM(config)

    assert plain_output_head(gemma2(30.0)) is None
    assert plain_output_head(gemma2(None)) is not None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_chunks_hold_a_fraction_of_the_full_logits():
    """Mistral-7B's head (32000 × 4096, bf16) over 2048 answer tokens, forward and backward: the full
    logits' path holds them in bf16 and fp32 (at least 6 bytes a logit); the chunked one a chunk's worth
    (10 bytes a logit of CHUNK_TOKENS tokens) beside the hidden states and their gradient."""
    tokens, hidden_size, vocab = 2048, 4096, 32000
    torch.manual_seed(0)
    head = torch.nn.Linear(hidden_size, vocab, bias=False, device="cuda", dtype=torch.bfloat16)
    head.requires_grad_(False)
    hidden = torch.randn(tokens, hidden_size, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    targets = torch.randint(0, vocab, (tokens,), device="cuda")

    def peak_above_start(log_probs) -> int:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        log_probs().sum().backward()
        hidden.grad = None
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - start

    def full():
        logits = head(hidden).float()
        return logits.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)

    full_peak = peak_above_start(full)
    chunked_peak = peak_above_start(lambda: chunked_answer_log_probs(hidden, head, targets, 256))
    assert full_peak >= tokens * vocab * 6
    assert chunked_peak <= 256 * vocab * 10 + 2 * tokens * hidden_size * 2 + 64 * 2**20
