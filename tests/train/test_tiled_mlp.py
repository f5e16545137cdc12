"""train.tile_mlp: the MLP run in tiles of the sequence gives the untiled losses and LoRA gradients on the
fast path (4-bit base, fused LoRA, offloaded checkpoints), on tiny models of real architectures, and
holds less memory."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from transformers import AutoModelForCausalLM, MistralConfig

from forumtune.config import load_config
from forumtune.errors import ConfigError
from forumtune.kernels import lora_linear
from forumtune.train.layer_checkpointing import use_layer_checkpointing
from forumtune.train.precision import prepare_for_qlora
from forumtune.train.tiled_mlp import MLPTiling, tiling_for, use_tiled_mlp
from tests.conftest import SMOKE_CONFIG
from tests.kernels.test_kernels import (
    ARCHITECTURES,
    SHAPE,
    batch,
    load,
    lora,
    loss_and_lora_grads,
    relative_error,
)

TILE = 16  # the test batch is 2 × 24 = 48 tokens: three tiles
LAYERS = SHAPE["num_hidden_layers"]


# The families whose layers end in the MLP's down projection get tiles (Gemma-2's post-MLP norm reads it).
TILED_ARCHITECTURES = sorted(name for name in ARCHITECTURES if name != "gemma2")


@pytest.fixture(scope="module", params=TILED_ARCHITECTURES)
def model_dir(request, tmp_path_factory) -> str:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp(request.param)
    AutoModelForCausalLM.from_config(ARCHITECTURES[request.param]()).save_pretrained(path)
    return str(path)


def fast_model(model_dir: str, tiling: MLPTiling | None, dropout: float = 0.0, checkpointing: bool = True):
    model = lora(
        prepare_for_qlora(load(model_dir, quantized=True), gradient_checkpointing=checkpointing), dropout
    )
    if checkpointing:
        use_layer_checkpointing(model, offload=True)
    lora_linear.use_fused_lora(model)
    if tiling is not None:
        assert use_tiled_mlp(model, tiling) == model.config.num_hidden_layers
    return model


def assert_same(result, reference, tolerance: float) -> None:
    (loss, grads), (ref_loss, ref_grads) = result, reference
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert grads.keys() == ref_grads.keys() and len(grads) == 7 * 2 * LAYERS
    for name in grads:
        assert relative_error(grads[name], ref_grads[name]) <= tolerance, name


def test_tiles_give_the_untiled_loss_and_lora_gradients(model_dir):
    untiled = loss_and_lora_grads(fast_model(model_dir, None))
    tiled = loss_and_lora_grads(fast_model(model_dir, MLPTiling(TILE, 0)))
    assert_same(tiled, untiled, 1e-5)  # measured 6e-7: the same kernels, LoRA gradients summed per tile


def test_under_bf16_autocast_tiles_agree_within_bf16_rounding(model_dir):
    """The GPU's precision: bf16 matmuls under autocast, which the tiles' backward restores."""

    def run(tiling: MLPTiling | None) -> tuple[float, dict[str, torch.Tensor]]:
        model = fast_model(model_dir, tiling)
        model.train()
        torch.manual_seed(3)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**batch()).loss
        loss.backward()
        return float(loss.detach()), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    (loss, grads), (ref_loss, ref_grads) = run(MLPTiling(TILE, 0)), run(None)
    assert loss == pytest.approx(ref_loss, rel=1e-3)  # bf16 matmuls of another row count may round apart
    assert grads.keys() == ref_grads.keys() and {g.dtype for g in grads.values()} == {torch.float32}
    for name in grads:  # LoRA gradients: a bf16 product per tile, summed in fp32 (measured 2.7e-3)
        assert relative_error(grads[name], ref_grads[name]) < 1e-2, name


def test_the_mlp_never_sees_more_than_a_tile_and_the_recompute_runs_none_of_it(model_dir, monkeypatch):
    def run(skip: bool) -> tuple[int, list[int], tuple]:
        model = fast_model(model_dir, MLPTiling(TILE, 0, skip_unread_outputs=skip))
        rows = []
        for name, module in model.named_modules():
            if name.endswith("mlp.gate_proj"):
                module.register_forward_pre_hook(
                    lambda m, args: rows.append(args[0].numel() // args[0].shape[-1])
                )
        calls = []
        real = lora_linear.dequantize_weight
        monkeypatch.setattr(lora_linear, "dequantize_weight", lambda *a: calls.append(1) or real(*a))
        result = loss_and_lora_grads(model)
        monkeypatch.setattr(lora_linear, "dequantize_weight", real)
        return len(calls), rows, result

    tiles = 48 // TILE
    skipped, rows, result = run(True)
    assert max(rows) == TILE  # gate's tokens × intermediate output never exists for the whole batch
    # per layer: attention's 4 projections in the forward, the recompute and the backward; the MLP's 3 per
    # tile in the forward, and per tile in the backward gate and up recomputed and all 3 back-propagated;
    # the first layer's q, k and v need no input gradient (the frozen embedding wants none)
    assert skipped == LAYERS * (3 * 4 + tiles * (3 + 2 + 3)) - 3
    full, _, reference = run(False)
    # computing the recompute's unread output runs gate and up once more per tile (the fused down projection
    # already skips its own unread output)
    assert full == skipped + LAYERS * tiles * 2
    assert_same(result, reference, 1e-6)


def reference_tiles(model) -> None:
    """The MLP applied tile by tile with plain autograd, no recompute: the same dropout draws in the same
    order as the tiled forward, which the tiled backward must replay."""
    for name, module in model.named_modules():
        if type(module).__name__.endswith("DecoderLayer"):
            norm, mlp = module.post_attention_layernorm, module.mlp
            norm_forward, mlp_forward = norm.forward, mlp.forward

            def tiled(x, norm_forward=norm_forward, mlp_forward=mlp_forward):
                rows = x.reshape(-1, x.shape[-1])
                pieces = [
                    mlp_forward(norm_forward(rows[s : s + TILE])) for s in range(0, rows.shape[0], TILE)
                ]
                return torch.cat(pieces).view(x.shape)

            norm.forward, mlp.forward = (lambda x: x), tiled


@pytest.mark.parametrize("checkpointing", [True, False])
def test_the_tiled_backward_replays_the_dropout_masks_of_the_forward(model_dir, checkpointing):
    reference_model = fast_model(model_dir, None, dropout=0.2, checkpointing=checkpointing)
    reference_tiles(reference_model)
    reference = loss_and_lora_grads(reference_model)
    tiled = loss_and_lora_grads(fast_model(model_dir, MLPTiling(TILE, 0), 0.2, checkpointing))
    assert_same(tiled, reference, 1e-5)


def test_micro_batches_at_or_below_the_threshold_run_untiled(model_dir):
    untiled = loss_and_lora_grads(fast_model(model_dir, None))
    short = loss_and_lora_grads(fast_model(model_dir, MLPTiling(TILE, above_tokens=48)))
    assert_same(short, untiled, 0.0)  # bit for bit: the tiled forward is not entered


def peak_cpu_bytes(run, timeline_path) -> float:
    """The peak of what the CPU allocator holds while `run` runs, from the profiler's memory timeline (its
    allocation and free events, by category): the CPU's counterpart of a GPU allocator's peak."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(
        activities=activities, profile_memory=True, record_shapes=True, with_stack=True
    ) as profiler:
        run()
    with warnings.catch_warnings():  # the export is marked deprecated; the timeline is what it says
        warnings.simplefilter("ignore")
        profiler.export_memory_timeline(str(timeline_path), device="cpu")
    _, sizes = json.loads(timeline_path.read_text())
    return max(sum(by_category) for by_category in sizes)


def test_a_layers_forward_and_backward_peak_drops_by_the_mlp_intermediates(tmp_path):
    seq, hidden, intermediate = 2048, 64, 224  # Mistral-7B's intermediate / hidden ratio (3.5)
    torch.manual_seed(0)
    shape = {**SHAPE, "hidden_size": hidden, "intermediate_size": intermediate, "num_hidden_layers": 1}
    shape["max_position_embeddings"] = seq
    AutoModelForCausalLM.from_config(MistralConfig(**shape)).save_pretrained(tmp_path)

    def layer_peak(tiling: MLPTiling | None) -> float:
        model = fast_model(str(tmp_path), tiling)
        model.train()
        inner = model.base_model.model.model
        x = torch.randn(1, seq, hidden, requires_grad=True)
        positions = torch.arange(seq)[None]
        rotary = inner.rotary_emb(x, positions)
        grad = torch.randn(1, seq, hidden)

        def forward_and_backward() -> None:
            out = inner.layers[0](x, attention_mask=None, position_ids=positions, position_embeddings=rotary)
            out.backward(grad)

        return peak_cpu_bytes(forward_and_backward, tmp_path / f"timeline-{tiling is not None}.json")

    untiled, tiled = layer_peak(None), layer_peak(MLPTiling(256, 0))
    full_length_intermediate = seq * intermediate * 4  # fp32 on the CPU
    # untiled, the recompute + backward holds gate, up, their product and its gradient for the whole
    # sequence at once (the intermediates are 3.5 hidden-state-sized tensors each; measured 32.1 such
    # tensors at the peak untiled, 14.9 tiled, where the attention's backward is the peak)
    assert untiled - tiled > 2.5 * full_length_intermediate
    assert tiled < 0.5 * untiled


def test_the_setting_is_checked_where_the_config_is_read():
    assert load_config(SMOKE_CONFIG).train.tile_mlp == "auto"
    assert load_config(SMOKE_CONFIG, ["train.tile_mlp=off"]).train.tile_mlp == "off"
    assert load_config(SMOKE_CONFIG, ["train.tile_mlp=2048"]).train.tile_mlp == 2048
    assert tiling_for("off") is None
    assert tiling_for(2048) == MLPTiling(2048, 2048)
    assert not tiling_for("auto").applies(8192) and tiling_for("auto").applies(16384)
    assert tiling_for("auto").tile_for(16384) == 4096
    lean = tiling_for("auto", split_attention=True)  # a sixteenth of the micro-batch, within 2048 and 4096
    tiles = [lean.tile_for(tokens) for tokens in (9216, 16384, 32768, 49152, 65536, 131072)]
    assert tiles == [2048, 2048, 2048, 3072, 4096, 4096]
    assert not lean.applies(8192) and lean.applies(9216)
    for bad, says in (("10", "too small"), ("fast", "not a setting"), ("true", "not a setting")):
        with pytest.raises(ConfigError, match=f"train.tile_mlp: .*{says}"):
            load_config(SMOKE_CONFIG, [f"train.tile_mlp={bad}"])
