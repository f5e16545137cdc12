"""benchmarks/fp8_loss_curve.py end to end on the CPU: the demo forum on the built-in tiny model, two steps
per variant with the fp8 path forced (the script's smoke mode), JSON and PNG written, the checks it makes
before comparing (same dataset), and forumtune's CUDA-only checks back in place afterwards."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from forumtune.train import loading, loop, preflight
from tests.conftest import SMOKE_CONFIG

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import fp8_loss_curve


def test_the_smoke_run_writes_both_curves_and_the_gradient_errors(tmp_path):
    checks = loading.uses_fast_path, loop.uses_fast_path, preflight.check_base_matmul
    argv = ["--config", str(SMOKE_CONFIG), "--steps", "2", "--eval-every", "2", "--micro-batch", "2"]
    argv += ["--force-fp8-on-cpu", "--runs-dir", str(tmp_path / "runs"), "--out-dir", str(tmp_path)]
    result = fp8_loss_curve.main([*argv, "--tag", "smoke"])

    assert (loading.uses_fast_path, loop.uses_fast_path, preflight.check_base_matmul) == checks
    written = json.loads((tmp_path / "fp8-loss-curve-smoke.json").read_text())
    assert written["forced_on_cpu"] and "not a measurement" in written["device_label"]
    assert (tmp_path / "fp8-loss-curve-smoke.png").read_bytes()[:4] == b"\x89PNG"
    runs = written["runs"]
    assert runs["bf16"]["dataset_sha256"] == runs["fp8"]["dataset_sha256"]
    for variant in ("bf16", "fp8"):
        curve = runs[variant]["loss_curve"]
        assert [step for step, _ in curve["train"]] == [1, 2] and [s for s, _ in curve["eval"]] == [2]
        assert math.isfinite(runs[variant]["final_train_loss"]) and runs[variant]["tokens_per_s"] > 0
        held_out = runs[variant]["held_out_loss_bf16_products"]
        assert math.isfinite(held_out["tuned"]) and held_out["tuned"] != held_out["base"]
    assert written["delta"]["train"]["steps"] == 2
    grads = written["first_step_grads"]
    assert grads["bf16"]["tensors"] == grads["fp8"]["tensors"] > 0
    # the fp8 products ran: their rounding moves the gradients further from fp32 than bf16's does
    assert 0 < grads["bf16"]["overall"] < grads["fp8"]["overall"] < 1
    assert result["delta"] == written["delta"]
    assert written["fp8_kernel_check"].endswith(": 0 bytes or scales differ")


def test_the_throughput_benchmarks_fp8_stacks_set_train_base_matmul():
    import train_throughput as tt

    assert set(tt.BASE_MATMUL) <= set(tt.STACKS) and "forumtune_fp8" in tt.FORUMTUNE_STACKS
    assert tt.forumtune_train_settings({"stack": "forumtune_fp8"})["base_matmul"] == "fp8"
    assert tt.forumtune_train_settings({"stack": "forumtune"})["base_matmul"] == "bf16"
    assert tt.FAST_STACKS["fast_fp8"] == tt.FAST_STACKS["fast"]  # the same path, the base's products aside
    assert tt.skips_down_proj("forumtune_fp8") and tt.skips_down_proj("fast_fp8")


def test_the_profile_counts_fp8_kernels_where_they_belong():
    import profile_step as ps

    gemm = "void cutlass::device_kernel<f8f8bf16_rowwise_sm90_e4m3_kernel>"
    shapes = [[4096, 4096], [4096, 14336]]
    assert ps.classify(gemm, ["aten::_scaled_mm"], shapes, "forward", vocab=32000, rank=16) == "matmul base"
    assert ps.gemm_precision(gemm) == "fp8" and ps.gemm_precision("sm90_xmma_gemm_bf16bf16") == "16-bit"
    assert (
        ps.classify("quantize_rows_body", [], [[4096, 4096]], "backward", vocab=32000, rank=16)
        == "fp8 quantize"
    )
    dequantize = "dequantize_nf4_fp8_body"
    assert ps.classify(dequantize, [], [], "forward", vocab=32000, rank=16) == "4-bit dequant"
