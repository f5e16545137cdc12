import pytest

from forumtune.config import load_config
from forumtune.errors import ConfigError
from forumtune.train import plan as plan_module
from forumtune.train.fit import fit_settings
from forumtune.train.plan import (
    ALLOCATOR_RESERVE_FRACTION,
    CUBLAS_WORKSPACE_BYTES,
    CUDA_CONTEXT_BYTES,
    GIB,
    MIB,
    allocator_reserve,
    chunked_head_bytes,
    load_shape,
    plan_memory,
    static_parts,
    usable_bytes,
)
from tests.conftest import SMOKE_CONFIG
from tests.train.conftest import mistral


def test_mistral_7b_4bit_weights_are_about_3_6_gib(mistral_7b_dir):
    config = load_config(SMOKE_CONFIG, [f"model.base={mistral_7b_dir}"])
    plan = plan_memory(config)
    quantized = plan.parts["base weights (4-bit linear)"] / GIB
    assert 3.2 < quantized < 3.6  # 7.0B linear weights at 4.127 bits each, with double-quantized constants
    assert plan.parts["embeddings, head, norms"] / GIB == pytest.approx(2 * 32000 * 4096 * 4 / GIB, rel=0.01)


def test_longer_sequences_cost_more_and_checkpointing_saves_memory(mistral_7b_dir):
    short = plan_memory(load_config(SMOKE_CONFIG, [f"model.base={mistral_7b_dir}", "build.max_seq_len=512"]))
    long = plan_memory(load_config(SMOKE_CONFIG, [f"model.base={mistral_7b_dir}", "build.max_seq_len=2048"]))
    no_checkpointing = plan_memory(
        load_config(
            SMOKE_CONFIG,
            [f"model.base={mistral_7b_dir}", "build.max_seq_len=2048", "train.gradient_checkpointing=false"],
        )
    )
    assert short.total < long.total < no_checkpointing.total


def test_fits_depends_on_the_card(mistral_7b_dir):
    config = load_config(SMOKE_CONFIG, [f"model.base={mistral_7b_dir}", "build.max_seq_len=1024"])
    assert plan_memory(config, vram_gib=80).fits
    assert not plan_memory(config, vram_gib=4).fits


def test_plan_cli_prints_the_table_and_verdict(mistral_7b_dir):
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "forumtune.cli",
            "plan",
            str(SMOKE_CONFIG),
            "--vram",
            "4",
            "--set",
            f"model.base={mistral_7b_dir}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "does not fit" in result.stdout and "train.micro_batch_size" in result.stdout
    assert "4 GB card: 3.6 GiB usable" in result.stdout
    for row in (
        "allocator's peak",
        "CUDA context",
        "cuBLAS",
        "paged optimizer state",
        "allocator's reserve",
        "whole process on the card",
    ):
        assert row in result.stdout


def test_the_fast_path_and_offloaded_checkpoints_need_less_memory(mistral_7b_dir):
    plain = plan_memory(mistral(mistral_7b_dir, "train.fast_path=false", "build.max_seq_len=2048"))
    fast = plan_memory(mistral(mistral_7b_dir, "build.max_seq_len=2048"))
    offloaded = plan_memory(
        mistral(mistral_7b_dir, "build.max_seq_len=2048", "train.gradient_checkpointing=offload")
    )
    assert offloaded.total < fast.total < plain.total
    assert "attention scores" in plain.parts and "attention scores" not in fast.parts  # fp32 math SDPA only
    # fp32 upcast off the fast path, which also keeps the input embedding on the GPU (train.embeddings_on_host)
    fast_on_card = plan_memory(
        mistral(mistral_7b_dir, "build.max_seq_len=2048", "train.embeddings_on_host=false")
    )
    assert plain.parts["embeddings, head, norms"] == 2 * fast_on_card.parts["embeddings, head, norms"]


def test_dpo_plans_chosen_and_rejected_together_and_the_reference_adapter(mistral_7b_dir, tmp_path):
    """A DPO micro-batch of 2 pairs is 4 sequences through the model; the reference pass adds no peak,
    the frozen copy of train.init_adapter its weights."""
    common = [f"model.base={mistral_7b_dir}", "build.max_seq_len=1024", "model.compute_dtype=float32"]
    sft = plan_memory(load_config(SMOKE_CONFIG, [*common, "train.micro_batch_size=4"]))
    dpo = plan_memory(load_config(SMOKE_CONFIG, [*common, "train.micro_batch_size=2", "train.method=dpo"]))
    assert dpo.parts == sft.parts
    (tmp_path / "adapter_config.json").write_text("{}")
    from_sft = plan_memory(
        load_config(
            SMOKE_CONFIG,
            [*common, "train.micro_batch_size=2", "train.method=dpo", f"train.init_adapter={tmp_path}"],
        )
    )
    extra = from_sft.total - dpo.total
    assert extra == from_sft.parts["reference adapter (frozen, fp32)"]
    assert extra == pytest.approx(from_sft.parts["LoRA weights + grads (fp32)"] / 2)
    orpo = plan_memory(
        load_config(
            SMOKE_CONFIG,
            [*common, "train.micro_batch_size=2", "train.method=orpo", f"train.init_adapter={tmp_path}"],
        )
    )
    assert orpo.total == dpo.total  # ORPO has no reference


def test_the_whole_process_counts_what_the_card_holds_besides_the_allocator(mistral_7b_dir):
    """The CUDA context, the cuBLAS workspace, the paged optimizer's managed memory and the allocator's
    reserve are rows of their own, added to the allocator's peak; the paged state moves out of the
    allocator's rows (8-bit AdamW without paging keeps the same 2 bytes per LoRA weight in it)."""
    plan = plan_memory(mistral(mistral_7b_dir, "build.max_seq_len=2048"))
    unpaged = plan_memory(mistral(mistral_7b_dir, "build.max_seq_len=2048", "train.optimizer=adamw_8bit"))
    card = plan.card_parts
    assert card["CUDA context (driver, kernels, library handles)"] == CUDA_CONTEXT_BYTES
    assert card["cuBLAS + cuBLASLt workspaces"] == CUBLAS_WORKSPACE_BYTES
    lora_weights = 16 * 32 * ((4096 + 4096) * 2 + (4096 + 1024) * 2 + 3 * (4096 + 14336))
    assert card["paged optimizer state (CUDA managed memory)"] == 2 * lora_weights == 80 * MIB
    assert "optimizer state" not in plan.parts and unpaged.parts["optimizer state"] == 2 * lora_weights
    assert "paged optimizer state (CUDA managed memory)" not in unpaged.card_parts
    assert plan.allocated == unpaged.allocated - 2 * lora_weights
    assert plan.total == pytest.approx(plan.allocated + sum(card.values()))
    assert plan.total == pytest.approx(unpaged.total)  # the same bytes, counted on the card either way


def test_the_allocators_reserve_grows_with_what_the_step_allocates(mistral_7b_dir):
    short = mistral(mistral_7b_dir, "build.max_seq_len=512", "train.micro_batch_size=1")
    long = mistral(mistral_7b_dir, "build.max_seq_len=4096", "train.micro_batch_size=1")
    reserves = []
    for config in (short, long):
        plan = plan_memory(config)
        static = sum(static_parts(config, load_shape(config)).values())
        reserve = plan.card_parts["allocator's reserve (reserved − allocated)"]
        assert reserve == pytest.approx(allocator_reserve(plan.allocated - static))
        reserves.append(reserve)
    assert reserves[0] < reserves[1]


def test_an_8_gb_card_leaves_7_6_gib_and_the_whole_count_decides(mistral_7b_dir):
    config = mistral(
        mistral_7b_dir,
        "build.max_seq_len=4096",
        "train.micro_batch_size=1",
        "train.gradient_checkpointing=true",
    )
    assert usable_bytes(config) == pytest.approx(7.6 * GIB)  # plan.vram_gib: 8 by default
    plan = plan_memory(config, vram_gib=8)
    assert plan.usable_bytes == pytest.approx(7.6 * GIB) and plan.vram_bytes == 8 * GIB
    assert plan.allocated < 7.6 * GIB < plan.total and not plan.fits  # the allocator's peak alone would fit
    assert plan_memory(config, vram_gib=8, usable_gib=plan.total / GIB).fits
    with_usable = mistral(mistral_7b_dir, "plan.usable_gib=7.2")
    assert usable_bytes(with_usable) == pytest.approx(7.2 * GIB)
    assert usable_bytes(with_usable, vram_gib=24) == pytest.approx(23.6 * GIB)  # another card named: derived
    with pytest.raises(ConfigError, match="plan.usable_gib"):
        mistral(mistral_7b_dir, "plan.usable_gib=9")


@pytest.fixture
def with_liger(monkeypatch):
    """Plan as on a GPU with liger-kernel installed: its fused loss keeps the logits from being the peak."""
    monkeypatch.setattr(plan_module, "liger_available", lambda: True)


def test_a_tiled_mlp_is_planned_part_by_part_as_computed_by_hand(mistral_7b_dir, with_liger):
    """train.tile_mlp (auto: tiles of a sixteenth of the micro-batch above 8192 tokens, at least 2048) and
    train.split_attention on the fast path with offloaded checkpoints: one layer's backward peak is
    itemised (train/layer_memory.py). At 1×16384 in the Mistral-7B shape the attention backward a group
    of heads at a time falls under the MLP phase and its 2048-token tile."""
    long = ["build.max_seq_len=16384", "train.micro_batch_size=1", "train.gradient_checkpointing=offload"]
    tiled = plan_memory(mistral(mistral_7b_dir, *long, "train.split_attention=on"))
    long.append("train.cuda_graphs=true")  # auto would drop them where nothing fits the card
    whole_heads = plan_memory(
        mistral(mistral_7b_dir, *long, "train.split_attention=off", "train.tile_mlp=4096")
    )
    untiled = plan_memory(mistral(mistral_7b_dir, *long, "train.tile_mlp=off", "train.split_attention=off"))
    hidden = 16384 * 4096 * 2  # one hidden-state-sized bf16 tensor
    assert hidden == 128 * MIB
    parts = tiled.parts
    # the next layer's input prefetched and the gradient from the layer above (the graphs free the fetched
    # input once copied); without graphs the fetched input instead, the next one coming back only once the
    # attention's backward is done (train/recomputed_norm.py)
    assert parts["layer inputs and output gradient in flight"] == 2 * hidden
    eager = plan_memory(mistral(mistral_7b_dir, *long, "train.cuda_graphs=false"))
    assert eager.parts["layer inputs and output gradient in flight"] == 2 * hidden
    # q and the attention output, k and v at 8 of 32 heads; the norm's output is recomputed, not saved
    assert parts["attention's saved tensors (q, k, v, output)"] == 2.5 * hidden
    # split, the attention backward holds h1's and the attention output's gradients (dq, dk and dv go into
    # q, k and v) and for one of 8 groups of heads its fp32 dq accumulator, dq, dk and dv expanded to its 4
    # query heads, output and output gradient slices: 368 MiB, under the MLP phase's h1, the MLP input's
    # gradient and one 2048-token tile: 256 + 256 MiB
    assert not any(name.startswith("attention backward") for name in parts)
    assert (1 + 1 + 7 / 8) * hidden == 368 * MIB
    mlp_phase = parts["MLP backward, one tile of 2048 tokens (+ h1 and its gradient)"]
    assert mlp_phase == 2 * hidden + 2048 * (4 * 14336 + 2 * 4096) * 2 == 512 * MIB
    # all heads at once: the fp32 dq accumulator and dk, dv expanded to 32 heads, 960 MiB
    all_heads = whole_heads.parts["attention backward (gradients, flash-attention buffers)"]
    assert all_heads == (1 + 1 + 1 + 2 + 2 + 0.5) * hidden == 960 * MIB
    assert "activations (layers kept for backward)" not in parts
    untiled_layer = untiled.parts["activations (layers kept for backward)"]
    assert untiled_layer == 16384 * (7 * 4096 + 2 * 1024 + 6 * 14336) * 2  # the calibrated untiled terms
    assert untiled_layer == 28.5 * hidden and sum(list(whole_heads.parts.values())[3:6]) == 12 * hidden
    saved = untiled_layer - 12 * hidden  # 2.06 GiB, and the allocator's reserve on it
    assert untiled.total - whole_heads.total == pytest.approx(saved * (1 + ALLOCATOR_RESERVE_FRACTION))
    split_saves = all_heads - mlp_phase  # 448 MiB
    assert whole_heads.total - tiled.total == pytest.approx(split_saves * (1 + ALLOCATOR_RESERVE_FRACTION))
    # auto splits only where whole heads do not fit the card: an 8 GB card at 24k, not at 16k, and not a
    # 24 GB card at 24k
    assert (
        whole_heads.fits
        and plan_memory(mistral(mistral_7b_dir, *long[1:], "build.max_seq_len=16384")).split_attention
        == "off"
    )
    longer = [*long[1:3], "build.max_seq_len=24576"]
    auto = plan_memory(mistral(mistral_7b_dir, *longer))
    split = plan_memory(mistral(mistral_7b_dir, *longer, "train.split_attention=on"))
    assert auto.split_attention == "on" and auto.parts == split.parts and auto.fits
    assert not plan_memory(mistral(mistral_7b_dir, *longer, "train.split_attention=off")).fits
    roomy = plan_memory(mistral(mistral_7b_dir, *longer), 24)
    assert roomy.split_attention == "off"


def test_auto_drops_the_cuda_graphs_only_where_nothing_fits_with_them(mistral_7b_dir, with_liger):
    """train.cuda_graphs auto: the graphs' static buffers (the layer input and its output gradient) and the
    loss kept beside their pool go where no setting fits the card with the graphs: 1×32768 on an 8 GB
    card, not 1×16384, and not 1×32768 on a 24 GB card."""
    common = ["train.micro_batch_size=1", "train.gradient_checkpointing=offload"]
    at_16k = plan_memory(mistral(mistral_7b_dir, "build.max_seq_len=16384", *common))
    assert (at_16k.split_attention, at_16k.cuda_graphs) == ("off", True)
    at_32k = mistral(mistral_7b_dir, "build.max_seq_len=32768", *common)
    eager = plan_memory(at_32k)
    assert (eager.split_attention, eager.cuda_graphs) == ("on", False)
    with_graphs = plan_memory(
        mistral(mistral_7b_dir, "build.max_seq_len=32768", *common, "train.cuda_graphs=true")
    )
    hidden = 32768 * 4096 * 2
    assert with_graphs.parts["CUDA graphs' static buffers"] == 2 * hidden
    assert "CUDA graphs' static buffers" not in eager.parts
    # the peak moves to the q, k and v projections' backward: the next layer input on its way back, the
    # fetched one, the gradient from the layer above; dq, dk and dv, h1's gradient, the norm's output
    # recomputed, and the norm output's gradient with the next projection's (9.5 hidden-state-sized
    # tensors at the MLP's backward before the norm's output was recomputed: 8)
    assert eager.parts["layer inputs and output gradient in flight"] == 3 * hidden
    projections = "q, k and v projections' backward (their gradients, h1's, the norm recomputed, the input's)"
    assert eager.parts[projections] == (1 + 2 / 4 + 4) * hidden
    assert with_graphs.total - eager.total > 3 * hidden  # the graphs' buffers and the loss blocks
    roomy = plan_memory(at_32k, 24)
    assert (roomy.split_attention, roomy.cuda_graphs) == ("off", True)
    assert fit_settings(at_32k) is not None  # fitting judges the autos at their leanest


def test_auto_tiles_rows_of_8192_tokens_only_where_the_card_needs_it(mistral_7b_dir, with_liger, tmp_path):
    """train.tile_mlp auto tiles rows of more than 8192 tokens by its rule; shorter rows get 2048-token
    tiles only where nothing fits the card untiled: the Qwen2.5-7B shape (its 18,944-wide MLP) at 1×8192
    on an 8 GB card, not on a 24 GB one, and not the Mistral-7B shape, which fits untiled."""
    from transformers import Qwen2Config

    Qwen2Config(
        vocab_size=152064,
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
    ).save_pretrained(tmp_path)
    row = ["build.max_seq_len=8192", "train.micro_batch_size=1", "train.gradient_checkpointing=offload"]
    qwen = plan_memory(mistral(tmp_path, *row))
    assert (qwen.tile_mlp, qwen.cuda_graphs) == (2048, True) and qwen.fits
    assert "MLP backward, one tile of 2048 tokens (+ h1 and its gradient)" in qwen.parts
    untiled = plan_memory(mistral(tmp_path, *row, "train.tile_mlp=off"))
    assert not untiled.fits and untiled.total - qwen.total > GIB / 2
    assert plan_memory(mistral(tmp_path, *row), 24).tile_mlp == "off"
    assert plan_memory(mistral(mistral_7b_dir, *row)).tile_mlp == "off"
    longer = mistral(mistral_7b_dir, "build.max_seq_len=16384", *row[1:])
    assert plan_memory(longer).tile_mlp == "auto"  # its own rule: tiles above 8192 tokens


def test_a_tile_as_long_as_the_sequence_makes_the_mlp_phase_the_peak(mistral_7b_dir, with_liger):
    common = ["train.micro_batch_size=1", "train.gradient_checkpointing=offload"]
    at_8k = mistral(mistral_7b_dir, "build.max_seq_len=8192", *common)
    untiled_8k = mistral(mistral_7b_dir, "build.max_seq_len=8192", *common, "train.tile_mlp=off")
    assert plan_memory(at_8k).parts == plan_memory(untiled_8k).parts  # auto leaves 8192 tokens untiled
    big_tile = plan_memory(
        mistral(mistral_7b_dir, "build.max_seq_len=32768", *common, "train.tile_mlp=16384")
    )
    hidden = 32768 * 4096 * 2
    mlp = big_tile.parts["MLP backward, one tile of 16384 tokens (+ h1 and its gradient)"]
    assert mlp == 2 * hidden + 16384 * (4 * 14336 + 2 * 4096) * 2
    kept = plan_memory(mistral(mistral_7b_dir, "build.max_seq_len=32768", "train.micro_batch_size=1"))
    assert kept.parts["layer inputs and output gradient in flight"] == hidden  # inputs kept: counted apart
    plain = plan_memory(mistral(mistral_7b_dir, "build.max_seq_len=32768", *common, "train.fast_path=false"))
    assert "activations (layers kept for backward)" in plain.parts  # tiles run on the fast path only


def test_preference_methods_plan_the_chunked_head_on_the_fast_path(mistral_7b_dir):
    """On the fast path DPO's answer log-probs go through the head in chunks: the full-vocabulary logits
    (875 MiB at 1 pair × (2 × 1024) tokens) are planned only where the head is trained in full."""
    from forumtune.kernels.answer_log_probs import CHUNK_TOKENS

    common = [
        "build.max_seq_len=1024",
        "train.method=dpo",
        "train.micro_batch_size=1",
        "train.fast_path=true",
    ]
    chunked = plan_memory(mistral(mistral_7b_dir, *common))
    full = plan_memory(mistral(mistral_7b_dir, *common, "lora.modules_to_save=[lm_head]"))
    assert full.parts["logits + loss"] == 2048 * 32000 * (2 + 12)
    assert "logits + loss" not in chunked.parts  # one decoder layer's backward is the peak now
    assert chunked.allocated < full.allocated
    shape = load_shape(mistral(mistral_7b_dir, *common))
    assert chunked_head_bytes(shape, 2048, 2) == 2 * 2048 * 4096 * 2 + CHUNK_TOKENS * 32000 * 10


def test_packed_preference_rows_stay_within_the_planned_rows(mistral_7b_dir):
    """Packed (build.packing), a micro-batch of pairs is at most 2 × micro-batch rows of max_seq_len
    tokens, the bound the plan counts whether or not the answers are packed."""
    import random

    import torch

    from forumtune.records import IGNORE_INDEX
    from forumtune.train.objectives import objective_for

    common = ["build.max_seq_len=64", "train.method=dpo", "train.micro_batch_size=3"]
    packed_config = mistral(mistral_7b_dir, *common, "build.packing=true")
    assert plan_memory(packed_config).parts == plan_memory(mistral(mistral_7b_dir, *common)).parts
    objective = objective_for(packed_config.train, pack_to=64)
    rng = random.Random(0)

    def side(prompt: int) -> tuple[list[int], list[int]]:
        answer = rng.randint(1, 64 - prompt)
        return [1] * (prompt + answer), [IGNORE_INDEX] * prompt + [1] * answer

    for _ in range(50):
        rows = []
        for _ in range(3):
            prompt = rng.randint(1, 40)
            (chosen, chosen_labels), (rejected, rejected_labels) = side(prompt), side(prompt)
            rows.append(
                {
                    "chosen_input_ids": chosen,
                    "chosen_labels": chosen_labels,
                    "rejected_input_ids": rejected,
                    "rejected_labels": rejected_labels,
                }
            )
        batch = objective.collate(rows, 0, torch.device("cpu"))
        assert batch["input_ids"].shape[0] <= 2 * 3 and batch["input_ids"].shape[1] <= 64
