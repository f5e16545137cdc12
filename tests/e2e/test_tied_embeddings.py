"""A model whose output layer is its input embedding (SmolLM2, Gemma, Qwen2-0.5B), through every stage.

A tiny random tied Llama goes through `forumtune run` on the demo forum (plain LoRA path): the trained
adapter leaves the tie alone, the merge stores no separate lm_head, the GGUF has no output tensor and
llama.cpp answers with the same greedy tokens as transformers. When lora.modules_to_save trains
lm_head, the merge unties it.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import gguf
import pytest
import torch
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from forumtune.config import load_config
from forumtune.export import llama_runtime
from forumtune.export.verify import transformers_greedy
from tests.conftest import write_config

QUICK = {
    "train": {"max_steps": 4, "eval_every": 2, "save_every": 2, "optimizer": "adamw"},
    "eval": {"num_samples": 2, "max_new_tokens": 8, "checkpoints": False},
    "merge": {"dtype": "float32"},
}


def save_tied_llama(directory: Path) -> Path:
    """A 2-layer Llama with tie_word_embeddings, with the built-in tiny model's tokenizer and chat template."""
    for entry in (resources.files("forumtune") / "assets" / "tiny-llama").iterdir():
        directory.mkdir(parents=True, exist_ok=True)
        (directory / entry.name).write_bytes(entry.read_bytes())
    tokenizer = AutoTokenizer.from_pretrained(directory)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        initializer_range=0.1,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


def run_forumtune(root: Path, base_dir: Path, **sections: dict) -> Path:
    config_path = write_config(
        root, model={"base": str(base_dir), "load_in_4bit": False}, **{**QUICK, **sections}
    )
    result = subprocess.run(
        [sys.executable, "-m", "forumtune.cli", "run", str(config_path)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return load_config(config_path).run_dir


def stored_names(model_dir: Path) -> set[str]:
    names: set[str] = set()
    for path in model_dir.glob("*.safetensors"):
        with safe_open(path, "pt") as handle:
            names.update(handle.keys())
    return names


@pytest.fixture(scope="module")
def tied_base(tmp_path_factory) -> Path:
    return save_tied_llama(tmp_path_factory.mktemp("tied-llama"))


@pytest.fixture(scope="module")
def tied_run(tmp_path_factory, tied_base) -> Path:
    return run_forumtune(tmp_path_factory.mktemp("tied-run"), tied_base, lora={"modules_to_save": None})


def test_training_keeps_the_tie_and_the_merge_stores_no_lm_head(tied_base, tied_run):
    adapter = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tied_base), str(tied_run / "adapter")
    )
    base = adapter.get_base_model()
    assert base.lm_head.weight.data_ptr() == base.model.embed_tokens.weight.data_ptr()
    assert not any("lm_head" in name or "embed_tokens" in name for name in stored_names(tied_run / "adapter"))
    merged_dir = tied_run / "merged"
    assert "lm_head.weight" not in stored_names(merged_dir)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)
    assert merged.config.tie_word_embeddings
    assert merged.lm_head.weight.data_ptr() == merged.model.embed_tokens.weight.data_ptr()
    ids = torch.tensor([[1, 100, 200, 300, 400]])
    with torch.no_grad():
        assert torch.allclose(adapter(ids).logits, merged(ids).logits, atol=1e-4)
        assert not torch.allclose(
            adapter(ids).logits, AutoModelForCausalLM.from_pretrained(tied_base)(ids).logits, atol=1e-4
        )  # training changed the model


def test_gguf_has_no_output_tensor_and_llama_cpp_answers_like_transformers(tied_run):
    gguf_path = tied_run / "export" / "demo-f16.gguf"
    names = {tensor.name for tensor in gguf.GGUFReader(gguf_path).tensors}
    assert "token_embd.weight" in names and "output.weight" not in names
    if not llama_runtime.llama_cpp_available():
        pytest.skip("llama.cpp's Python bindings (the llama extra) are not installed")
    merged = AutoModelForCausalLM.from_pretrained(tied_run / "merged", dtype=torch.float32).eval()
    prompt = AutoTokenizer.from_pretrained(tied_run / "merged")("How often should I wax my skis?").input_ids
    with llama_runtime.loaded_gguf(gguf_path) as llama:
        assert llama_runtime.greedy_continuation(llama, prompt, 12) == transformers_greedy(merged, prompt, 12)


def test_a_trained_head_is_untied_by_the_merge(tmp_path, tied_base):
    run_dir = run_forumtune(tmp_path, tied_base, lora={"modules_to_save": ["lm_head"]})
    adapter = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tied_base), str(run_dir / "adapter")
    )
    merged = AutoModelForCausalLM.from_pretrained(run_dir / "merged", dtype=torch.float32)
    assert not merged.config.tie_word_embeddings and "lm_head.weight" in stored_names(run_dir / "merged")
    ids = torch.tensor([[1, 100, 200, 300, 400]])
    with torch.no_grad():
        assert torch.allclose(adapter(ids).logits, merged(ids).logits, atol=1e-4)
        assert not torch.equal(merged.lm_head.weight, merged.model.embed_tokens.weight)
    names = {tensor.name for tensor in gguf.GGUFReader(run_dir / "export" / "demo-f16.gguf").tensors}
    assert "output.weight" in names
