"""train.base_matmul: fp8 is refused, with what to change, wherever it cannot run: by the config where the
settings rule it out, and before the model is loaded where the device does (this machine has no CUDA GPU;
on a GPU below compute capability 8.9 the same check names the card). The fp8 maths itself:
tests/kernels/test_fp8_matmul.py."""

from __future__ import annotations

import pytest
import torch
from rich.console import Console
from transformers import MistralConfig

from forumtune.config import load_config
from forumtune.errors import ConfigError, TrainError
from forumtune.kernels.lora_linear import FusedLoRA
from forumtune.train.loop import run_train
from tests.conftest import write_config
from tests.train.conftest import write_dataset

FP8 = ["train.base_matmul=fp8", "model.compute_dtype=bfloat16"]


def test_the_default_is_bf16_everywhere(tmp_path):
    assert load_config(write_config(tmp_path)).train.base_matmul == "bf16"
    assert FusedLoRA().base_matmul == "bf16"


@pytest.mark.parametrize(
    "override,needed",
    [
        ("model.compute_dtype=float16", "model.compute_dtype=bfloat16"),
        ("train.fast_path=false", "train.fast_path=true"),
        ("model.load_in_4bit=false", "model.load_in_4bit=true"),
        ("model.quant_type=fp4", "model.quant_type=nf4"),
        ("train.device=cpu", "train.device=auto or cuda"),
    ],
)
def test_settings_that_rule_fp8_out_are_named(tmp_path, override, needed):
    with pytest.raises(
        ConfigError, match=f"train.base_matmul=fp8 .* needs {needed} .*set train.base_matmul=bf16"
    ):
        load_config(write_config(tmp_path), [*FP8, override])
    assert load_config(write_config(tmp_path), FP8).train.base_matmul == "fp8"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_a_run_without_a_cuda_gpu_stops_before_loading_the_model(tmp_path, tiny_tokenizer):
    weightless = tmp_path / "weightless"  # a readable config and no weights: loading would fail otherwise
    MistralConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, num_hidden_layers=1).save_pretrained(
        weightless
    )
    tiny_tokenizer.save_pretrained(weightless)
    config = load_config(write_config(tmp_path, model={"base": str(weightless)}), FP8)
    write_dataset(config.run_dir / "dataset", tiny_tokenizer, train_count=8, eval_count=2)
    with pytest.raises(
        TrainError, match="base_matmul=fp8 runs on a CUDA GPU, but this run trains on the cpu"
    ):
        run_train(config, config.run_dir / "dataset", config.run_dir, Console(quiet=True))
