"""merge_adapter: the adapter is really folded in, the output is a complete HF model dir, failures are clean."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from safetensors import safe_open
from tests.layouts import kernel_on_this_cpu
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from forumtune.cpu_layout import (
    is_packed,
    linear_4bit_layers,
    use_packed_layout_for_generation,
    use_trainable_layout,
)
from forumtune.export.errors import ExportError
from forumtune.export.merge import merge_adapter

FileSizeLimit = Callable[[int], AbstractContextManager[None]]
MakeAdapter = Callable[..., Path]

PROMPT_IDS = torch.tensor([[0, 17, 260, 79, 340, 279, 269, 79, 71, 120, 5, 301]])


def logits_of(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=PROMPT_IDS).logits


def peft_logits(
    base_dir: Path, adapter_dir: Path, *, trainable: bool = False, **load_options: Any
) -> torch.Tensor:
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32, **load_options)
    if trainable:
        use_trainable_layout(base)
    return logits_of(PeftModel.from_pretrained(base, adapter_dir).eval())


def merged_logits_of(model_dir: Path) -> torch.Tensor:
    return logits_of(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval())


@pytest.mark.parametrize("kind", ["llama", "mistral"])
def test_merged_model_matches_the_peft_model_and_differs_from_the_base(
    request: pytest.FixtureRequest, merged_dirs: dict[str, Path], kind: str
) -> None:
    base_dir = request.getfixturevalue(f"{kind}_base_dir")
    adapter_dir = request.getfixturevalue(f"{kind}_adapter_dir")
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, adapter_dir).eval()
    merged = AutoModelForCausalLM.from_pretrained(merged_dirs[kind], dtype=torch.float32).eval()

    peft_logits = logits_of(peft_model)
    with peft_model.disable_adapter():
        base_logits = logits_of(peft_model)
    merged_logits = logits_of(merged)

    torch.testing.assert_close(merged_logits, peft_logits, rtol=0, atol=1e-5)
    assert (merged_logits - base_logits).abs().max() > 1e-2, "the adapter did not change the model"
    assert not any("lora" in name for name, _ in merged.named_parameters())


def test_merged_dir_holds_config_generation_config_and_tokenizer_with_chat_template(
    merged_llama_dir: Path, tokenizer_dir: Path
) -> None:
    names = {path.name for path in merged_llama_dir.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= names
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in names)
    config = json.loads((merged_llama_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    merged_tokenizer = AutoTokenizer.from_pretrained(merged_llama_dir)
    base_tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert merged_tokenizer.get_vocab() == base_tokenizer.get_vocab()
    assert merged_tokenizer.chat_template == base_tokenizer.chat_template is not None


def test_tokenizer_saved_with_the_adapter_wins_and_an_earlier_merge_is_replaced(
    tmp_path: Path, llama_base_dir: Path, llama_adapter_dir: Path, tokenizer_dir: Path, merged_llama_dir: Path
) -> None:
    adapter_dir = tmp_path / "adapter"
    shutil.copytree(llama_adapter_dir, adapter_dir)
    training_tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    training_tokenizer.chat_template = "{{ messages[0]['content'] }}<|forum|>"
    training_tokenizer.save_pretrained(adapter_dir)
    earlier_merge = shutil.copytree(merged_llama_dir, tmp_path / "merged")
    (earlier_merge / "stale.txt").write_text("from the previous run")

    out_dir = merge_adapter(llama_base_dir, adapter_dir, earlier_merge, dtype="bfloat16")

    assert out_dir == earlier_merge and not (out_dir / "stale.txt").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["adapter", "merged"]
    assert AutoTokenizer.from_pretrained(out_dir).chat_template == "{{ messages[0]['content'] }}<|forum|>"
    with safe_open(out_dir / "model.safetensors", framework="pt") as weights:
        assert {weights.get_tensor(name).dtype for name in weights.keys()}  # noqa: SIM118 (safe_open is not a dict) == {torch.bfloat16}


def test_missing_adapter_config_is_reported(tmp_path: Path, llama_base_dir: Path) -> None:
    (tmp_path / "adapter").mkdir()
    with pytest.raises(ExportError, match=r"adapter.*has no adapter_config\.json"):
        merge_adapter(llama_base_dir, tmp_path / "adapter", tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_missing_base_model_is_reported(tmp_path: Path, llama_adapter_dir: Path) -> None:
    missing = tmp_path / "no-such-base"
    with pytest.raises(ExportError, match=r"base model .*no-such-base.* not found"):
        merge_adapter(missing, llama_adapter_dir, tmp_path / "merged")


def test_unknown_dtype_is_reported(tmp_path: Path, llama_base_dir: Path, llama_adapter_dir: Path) -> None:
    with pytest.raises(ExportError, match=r"dtype 'int4'.*bfloat16"):
        merge_adapter(llama_base_dir, llama_adapter_dir, tmp_path / "merged", dtype="int4")


def test_out_dir_that_is_not_an_earlier_merge_is_left_alone(
    tmp_path: Path, llama_base_dir: Path, llama_adapter_dir: Path
) -> None:
    out_dir = tmp_path / "merged"
    out_dir.mkdir()
    (out_dir / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match=r"already exists and is not a model directory"):
        merge_adapter(llama_base_dir, llama_adapter_dir, out_dir)
    assert (out_dir / "notes.txt").read_text() == "keep me"


def test_failed_write_leaves_no_out_dir_and_no_staging_dir(
    tmp_path: Path, llama_base_dir: Path, llama_adapter_dir: Path, file_size_limit: FileSizeLimit
) -> None:
    out_dir = tmp_path / "merged"
    with file_size_limit(16 * 1024), pytest.raises(ExportError, match=r"could not write .*File too large"):
        merge_adapter(llama_base_dir, llama_adapter_dir, out_dir, dtype="float32")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["llama", "mistral"])
def test_bfloat16_merge_matches_the_peft_model_within_bfloat16_tolerance(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    base_dir = request.getfixturevalue(f"{kind}_base_dir")
    adapter_dir = request.getfixturevalue(f"{kind}_adapter_dir")
    merged_dir = merge_adapter(base_dir, adapter_dir, tmp_path / "merged", dtype="bfloat16")
    config = json.loads((merged_dir / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and config["architectures"][0].lower().startswith(kind)
    # Each weight is rounded once to bfloat16 (8 bits of mantissa): the logits move by about that much.
    torch.testing.assert_close(
        merged_logits_of(merged_dir), peft_logits(base_dir, adapter_dir), rtol=2**-7, atol=2**-7
    )


def test_dora_adapter_is_folded_in_with_its_magnitudes(
    tmp_path: Path, llama_base_dir: Path, merged_llama_dir: Path, make_adapter: MakeAdapter
) -> None:
    adapter_dir = make_adapter(llama_base_dir, tmp_path / "dora-adapter", use_dora=True)
    merged_dir = merge_adapter(llama_base_dir, adapter_dir, tmp_path / "merged", dtype="float32")
    merged = merged_logits_of(merged_dir)
    torch.testing.assert_close(merged, peft_logits(llama_base_dir, adapter_dir), rtol=0, atol=1e-5)
    assert (merged - merged_logits_of(merged_llama_dir)).abs().max() > 1e-2, "magnitudes were ignored"


def test_rslora_scaling_and_a_fully_trained_lm_head_are_merged(
    tmp_path: Path, mistral_base_dir: Path, make_adapter: MakeAdapter
) -> None:
    adapter_dir = make_adapter(
        mistral_base_dir, tmp_path / "adapter", use_rslora=True, modules_to_save=["lm_head"]
    )
    merged_dir = merge_adapter(mistral_base_dir, adapter_dir, tmp_path / "merged", dtype="float32")
    torch.testing.assert_close(
        merged_logits_of(merged_dir), peft_logits(mistral_base_dir, adapter_dir), rtol=0, atol=1e-5
    )


def test_a_base_only_held_in_4_bit_is_dequantised_for_the_merge(
    tmp_path: Path, llama_base_dir: Path, llama_adapter_dir: Path, cpu_layout: str
) -> None:
    nf4 = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32,
    )
    quantized = AutoModelForCausalLM.from_pretrained(
        llama_base_dir, quantization_config=nf4, device_map="cpu"
    )
    if cpu_layout == "packed" and kernel_on_this_cpu():
        # a base that generated before it was saved: packed, then unpacked on save with its scales rounded
        use_packed_layout_for_generation(quantized)
        logits_of(quantized.eval())
        assert any(is_packed(layer) for layer in linear_4bit_layers(quantized).values())
    quantized.save_pretrained(tmp_path / "nf4-base")
    AutoTokenizer.from_pretrained(llama_base_dir).save_pretrained(tmp_path / "nf4-base")

    merged_dir = merge_adapter(tmp_path / "nf4-base", llama_adapter_dir, tmp_path / "merged", dtype="float32")

    assert "quantization_config" not in json.loads((merged_dir / "config.json").read_text())
    with safe_open(merged_dir / "model.safetensors", framework="pt") as weights:
        assert not any("absmax" in name or "quant" in name for name in weights.keys())  # noqa: SIM118
    # The adapter trained against the dequantised NF4 weights (the trainable layout, whatever the CPU):
    # the merge reproduces exactly that model.
    on_4bit_base = peft_logits(tmp_path / "nf4-base", llama_adapter_dir, device_map="cpu", trainable=True)
    torch.testing.assert_close(merged_logits_of(merged_dir), on_4bit_base, rtol=0, atol=1e-4)
    on_full_base = peft_logits(llama_base_dir, llama_adapter_dir)
    assert (on_full_base - on_4bit_base).abs().max() > 1e-3, "4-bit rounding should be visible"


def test_merge_writes_shards_with_an_index_that_transformers_loads(
    tmp_path: Path, mistral_base_dir: Path, mistral_adapter_dir: Path, merged_mistral_dir: Path
) -> None:
    merged_dir = merge_adapter(
        mistral_base_dir, mistral_adapter_dir, tmp_path / "merged", dtype="float32", max_shard_size="100KB"
    )
    index = json.loads((merged_dir / "model.safetensors.index.json").read_text())
    shards = sorted(path.name for path in merged_dir.glob("model-*.safetensors"))
    assert len(shards) > 3 and set(index["weight_map"].values()) == set(shards)
    assert all(path.stat().st_size < 100_000 + 70_000 for path in merged_dir.glob("model-*.safetensors"))
    torch.testing.assert_close(
        merged_logits_of(merged_dir), merged_logits_of(merged_mistral_dir), rtol=0, atol=0
    )


def test_adapter_trained_on_another_base_is_refused(
    tmp_path: Path, mistral_base_dir: Path, llama_adapter_dir: Path
) -> None:
    with pytest.raises(ExportError, match=r"does not fit base model.*mlp\.down_proj.*Check model\.base"):
        merge_adapter(mistral_base_dir, llama_adapter_dir, tmp_path / "merged")
    assert not (tmp_path / "merged").exists()
