"""The compute estimate: FLOPs per token against a hand count and against torch's own FLOP counter on real
architectures, the GPU table, MFU from a recorded run, and what `forumtune plan` prints."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModelForCausalLM, Gemma2Config, LlamaConfig, MistralConfig, Qwen2Config

from forumtune.config import load_config
from forumtune.records import IGNORE_INDEX
from forumtune.train import compute
from forumtune.train.estimate import epoch_work, estimate_run
from forumtune.train.plan import ModelShape, model_shape
from tests.conftest import SMOKE_CONFIG

TINY = ModelShape(
    vocab=100, hidden=8, intermediate=16, layers=2, q_dim=8, kv_dim=4, head_dim=4, tied_embeddings=False
)


def test_flops_of_a_tiny_shape_by_hand():
    # per layer: q, o 8×8 each, k, v 8×4 each, gate, up, down 8×16 each: 128 + 64 + 384 = 576 weights; 2 layers
    base, head = 2 * 576, 100 * 8
    # LoRA r=2: r × (in + out) per projection: 2 × ((8+8)·2 + (8+4)·2 + (8+16)·3) = 256 per layer
    lora = 2 * 256
    # attention over 3-token rows: QKᵀ and AV, 2·8 FLOP per key each, 2 keys per query on average, 2 layers
    attention = 2 * (2 * 8 * 2) * 2
    flops = compute.step_flops(TINY, 3, 2, checkpointing=True)
    assert flops.forward == 2 * (base + head + lora) + attention == 5056
    assert flops.backward == 2 * (base + head + lora) + 2 * lora + 2 * attention == 6208
    assert flops.recompute == 2 * (base + lora) + attention == 3456
    assert flops.model == 5056 + 6208 and flops.hardware == 5056 + 6208 + 3456
    skipping = compute.step_flops(TINY, 3, 2, checkpointing=True, skip_down_proj=True)
    assert skipping.recompute == 3456 - 2 * 8 * 16 * 2  # one 8×16 matmul per layer left out
    assert compute.step_flops(TINY, 3, 2, checkpointing=False).recompute == 0
    trained_head = compute.step_flops(TINY, 3, 2, trained_head=True)
    assert trained_head.backward == flops.backward + 2 * head


SHAPE = {"vocab_size": 96, "hidden_size": 32, "intermediate_size": 80, "num_hidden_layers": 2}
ARCHITECTURES = {
    "llama": lambda: LlamaConfig(**SHAPE, num_attention_heads=4, num_key_value_heads=2),
    "mistral": lambda: MistralConfig(**SHAPE, num_attention_heads=4, num_key_value_heads=1),
    "qwen2": lambda: Qwen2Config(**SHAPE, num_attention_heads=4, num_key_value_heads=2),
    "gemma2": lambda: Gemma2Config(
        **SHAPE, num_attention_heads=2, num_key_value_heads=1, head_dim=32, tie_word_embeddings=True
    ),
}


@pytest.mark.parametrize("family", sorted(ARCHITECTURES))
def test_the_forward_count_is_what_torch_counts_on_the_real_architecture(family):
    config = ARCHITECTURES[family]()
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    seq = 12
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(input_ids=torch.randint(0, 96, (1, seq)))
    shape = model_shape(config)
    # the counter counts attention over every key (eager attention multiplies the masked half too); this
    # module counts the causal half: compare the matmuls of the weights, which must agree exactly
    full_attention = 2 * 2 * shape.q_dim * seq * seq * shape.layers
    no_lora = compute.step_flops(shape, seq, 0)
    weights_only = no_lora.forward - compute.attention_flops(shape, seq)
    assert counter.get_total_flops() - full_attention == seq * weights_only


@pytest.mark.parametrize(
    ("device", "key"),
    [
        ("NVIDIA H100 80GB HBM3", "h100"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA H200", "h200"),
        ("NVIDIA A100-SXM4-80GB", "a100"),
        ("NVIDIA A10", "a10"),
        ("NVIDIA L40S", "l40s"),
        ("NVIDIA L4", "l4"),
        ("NVIDIA GeForce RTX 4090", "4090"),
        ("NVIDIA GeForce RTX 3070", "3070"),
        ("Tesla T4", None),
    ],
)
def test_the_gpu_is_found_from_its_device_name(device, key):
    gpu = compute.detect_gpu(device)
    assert (gpu.key if gpu else None) == key


def test_an_unknown_gpu_key_names_the_known_ones():
    assert compute.gpu_named("H200").bf16_tflops == 989.4
    with pytest.raises(KeyError, match="4090"):
        compute.gpu_named("h300")


MISTRAL_7B = ModelShape(
    vocab=32000,
    hidden=4096,
    intermediate=14336,
    layers=32,
    q_dim=4096,
    kv_dim=1024,
    head_dim=128,
    tied_embeddings=False,
)


def test_the_fast_path_mfu_is_the_recorded_h200_run():
    # forumtune train, Mistral-7B shape, 2×2048, H200: 12,198 tokens/s median (benchmarks/RESULTS.md §0)
    flops = compute.step_flops(MISTRAL_7B, 2048, 16, skip_down_proj=True)
    assert flops.model / 1e9 == pytest.approx(30.3, abs=0.1)
    measured = compute.mfu(12_198, flops, compute.gpu_named("h200"))
    assert measured == pytest.approx(compute.FAST_PATH_MFU, abs=0.001)
    assert compute.mfu(None, flops, compute.gpu_named("h200")) is None
    assert compute.mfu(12_198, flops, None) is None


def rows_with_masks() -> list[dict]:
    """Three rows of 5, 8 and 3 tokens; the first two tokens of each are prompt (not trained)."""
    rows = []
    for length in (5, 8, 3):
        ids = list(range(4, 4 + length))
        rows.append({"input_ids": ids, "labels": [IGNORE_INDEX] * 2 + ids[2:]})
    return rows


def test_an_epoch_counts_trained_real_and_padded_tokens(mistral_7b_dir):
    config = load_config(
        SMOKE_CONFIG,
        [f"model.base={mistral_7b_dir}", "train.micro_batch_size=2", "lora.modules_to_save=null"],
    )
    work = epoch_work(config, MISTRAL_7B, "mistral", rows_with_masks())
    assert work.rows == 3 and work.micro_batches == 1  # the incomplete second micro-batch is left out
    # which two rows the seeded shuffle puts first decides the counts: recount them from the same order
    from forumtune.train.batches import epoch_order

    first = [rows_with_masks()[i] for i in epoch_order(3, config.seed, 0)[:2]]
    lengths = [len(r["input_ids"]) for r in first]
    assert work.tokens == sum(lengths)
    assert work.trained_tokens == sum(n - 2 for n in lengths)  # labels past the causal shift, prompt left out
    assert work.processed_tokens == 2 * max(lengths)  # padded to the longer row (fp32: no graphs' multiple)
    per_token = compute.step_flops(MISTRAL_7B, max(lengths), 16, checkpointing=True).model
    assert work.model_flops == pytest.approx(2 * max(lengths) * per_token)


def test_plan_prints_the_compute_estimate_from_the_built_dataset(mistral_7b_dir, tmp_path):
    overrides = [
        f"model.base={mistral_7b_dir}",
        f"runs_dir={tmp_path}",
        "model.compute_dtype=bfloat16",
        "lora.modules_to_save=null",
        "train.micro_batch_size=1",
        "train.grad_accum_steps=1",
        "train.max_steps=null",
        "train.epochs=2",
        "build.max_seq_len=2048",
    ]
    dataset = tmp_path / "demo" / "dataset"
    dataset.mkdir(parents=True)
    row = {"input_ids": list(range(2048)), "labels": [IGNORE_INDEX] * 48 + list(range(48, 2048))}
    (dataset / "train.jsonl").write_text("\n".join(json.dumps(row) for _ in range(100)) + "\n")
    estimate = estimate_run(load_config(SMOKE_CONFIG, overrides), compute.gpu_named("h200"))
    # 2,000 trained tokens a row: 47 prompt labels are left after the causal shift
    assert estimate.steps == 200 and estimate.epoch.trained_tokens == 100 * 2000
    # the fast path at 2048 tokens on the H200 is the run the MFU constant came from: 12,198 tokens/s
    assert estimate.seconds(estimate.epoch.model_flops) == pytest.approx(100 * 2048 / 12_198, rel=0.01)

    command = [sys.executable, "-m", "forumtune.cli", "plan", str(SMOKE_CONFIG), "--gpu", "h200"]
    for override in overrides:
        command += ["--set", override]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in (
        "model FLOPs per token (forward + backward)",
        "30.3",  # GFLOP per token of the Mistral-7B shape at 2,048 tokens, LoRA r16
        "trained tokens per epoch (in the loss)",
        "200,000",
        "tokens processed per epoch (with padding)",
        "204,800",
        "NVIDIA H200: 989.4 TFLOP/s bf16 × MFU 37.4%",
        "time per epoch",
        "17 s",  # 204,800 tokens at ~12,200 tokens/s
        "time per run",
        "34 s",
    ):
        assert expected in out, (expected, out)

    bad = subprocess.run(
        [sys.executable, "-m", "forumtune.cli", "plan", str(SMOKE_CONFIG), "--gpu", "h300"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode != 0 and "--gpu must be one of" in bad.stdout + bad.stderr
