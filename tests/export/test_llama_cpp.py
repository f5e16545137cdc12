"""llama.cpp itself (llama-cpp-python) loads the exported GGUFs and computes what transformers computes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as QType
from gguf import GGUFReader
from transformers import AutoModelForCausalLM, AutoTokenizer

from forumtune.export import llama_runtime
from forumtune.export.errors import ExportError
from forumtune.export.gguf_export import export_gguf
from forumtune.export.lora_gguf import export_lora_gguf
from forumtune.export.quantize import export_k_quant, find_quantize_tool
from forumtune.export.verify import transformers_greedy, transformers_logits, verify_gguf

pytestmark = pytest.mark.skipif(
    not llama_runtime.llama_cpp_available(),
    reason="llama.cpp bindings come with `make test` (the llama extra)",
)

MakeTinyModel = Callable[..., Path]
TEST_STRINGS = [
    "My bike squeaks after rain - any ideas?",
    "  leading spaces, trailing newline\n",
    "Gear 11 broke during thread #42 in 2019 :)",
    "Umlaute: Müller fährt Straße; emoji 🚲🦙; 中文",
    "<s>user\nHow do I true a wheel?</s>\n<s>assistant\n",
]


@pytest.mark.parametrize("kind", ["llama", "mistral"])
def test_llama_cpp_tokenizes_test_strings_to_the_hf_ids(
    tmp_path: Path, merged_dirs: dict[str, Path], kind: str
) -> None:
    hf_tokenizer = AutoTokenizer.from_pretrained(merged_dirs[kind])
    gguf_path = export_gguf(merged_dirs[kind], tmp_path / "model.gguf", "f16")
    with llama_runtime.loaded_gguf(gguf_path, vocab_only=True) as llama:
        for text in TEST_STRINGS:
            assert llama_runtime.tokenize(llama, text, add_bos=True) == hf_tokenizer(text).input_ids, text


def test_sentencepiece_style_vocab_tokenizes_like_hf_in_llama_cpp(
    tmp_path: Path, sentencepiece_tokenizer_dir: Path, make_tiny_model: MakeTinyModel
) -> None:
    model_dir = make_tiny_model("mistral", sentencepiece_tokenizer_dir, tmp_path / "spm-mistral")
    hf_tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with llama_runtime.loaded_gguf(export_gguf(model_dir, tmp_path / "model.gguf"), vocab_only=True) as llama:
        for text in TEST_STRINGS[:4]:
            hf_ids = hf_tokenizer(text, add_special_tokens=False).input_ids
            assert llama_runtime.tokenize(llama, text, add_bos=False) == hf_ids, text


@pytest.mark.parametrize("out_type", ["f32", "f16"])
@pytest.mark.parametrize("kind", ["llama", "mistral"])
def test_llama_cpp_greedy_continuation_matches_transformers(
    tmp_path: Path, merged_dirs: dict[str, Path], kind: str, out_type: str
) -> None:
    model_dir = merged_dirs[kind]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prompt_ids = AutoTokenizer.from_pretrained(model_dir)("The chain squeaks after a long ride, ").input_ids
    gguf_path = export_gguf(model_dir, tmp_path / "model.gguf", out_type)
    with llama_runtime.loaded_gguf(gguf_path) as llama:
        continuation = llama_runtime.greedy_continuation(llama, prompt_ids, 16)
        logits = llama_runtime.logits_for(llama, prompt_ids)
    assert continuation == transformers_greedy(model, prompt_ids, 16)
    hf_logits = transformers_logits(model, prompt_ids)
    np.testing.assert_allclose(logits, hf_logits, atol=2e-3 if out_type == "f32" else 2e-2)


def test_verify_passes_for_the_export_and_catches_a_gguf_of_another_model(
    tmp_path: Path, merged_llama_dir: Path, llama_base_dir: Path
) -> None:
    report = verify_gguf(
        export_gguf(merged_llama_dir, tmp_path / "merged.gguf", "f16"), merged_llama_dir, "f16"
    )
    assert report.llama_cpp_ran and not report.structure_problems and len(report.prompts) == 3
    assert all(check.same_token_ids and check.greedy_matches for check in report.prompts)
    assert min(check.top1_agreement for check in report.prompts) == 1.0

    unmerged = export_gguf(llama_base_dir, tmp_path / "base.gguf", "f16")  # right shapes, wrong weights
    with pytest.raises(
        ExportError, match=r"(?s)failed verification.*top token agrees with transformers' at only"
    ):
        verify_gguf(unmerged, merged_llama_dir, "f16")


def test_lora_gguf_on_the_base_gguf_computes_the_merged_model(
    tmp_path: Path, mistral_base_dir: Path, mistral_adapter_dir: Path, merged_mistral_dir: Path
) -> None:
    lora_path = export_lora_gguf(
        mistral_adapter_dir, mistral_base_dir, tmp_path / "lora.gguf", "forum-mistral"
    )
    reader = GGUFReader(lora_path)
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.lora.alpha"].contents() == 16.0
    assert {t.name for t in reader.tensors} >= {"blk.1.attn_q.weight.lora_a", "blk.1.attn_q.weight.lora_b"}

    base_gguf = export_gguf(mistral_base_dir, tmp_path / "base.gguf", "f32")
    report = verify_gguf(base_gguf, merged_mistral_dir, "f32", lora_path=lora_path)
    assert all(check.greedy_matches for check in report.prompts)
    assert max(check.max_logit_diff for check in report.prompts) < 5e-3


def test_dora_adapter_cannot_become_a_llama_cpp_lora(
    tmp_path: Path, llama_base_dir: Path, make_adapter: Callable[..., Path]
) -> None:
    adapter_dir = make_adapter(llama_base_dir, tmp_path / "dora", use_dora=True)
    with pytest.raises(ExportError, match=r"cannot be a llama\.cpp LoRA because it uses DoRA.*--format gguf"):
        export_lora_gguf(adapter_dir, llama_base_dir, tmp_path / "lora.gguf", "x")
    assert not (tmp_path / "lora.gguf").exists()


def test_q4_k_m_through_llama_cpps_quantizer_loads_and_mostly_agrees(
    tmp_path: Path, tokenizer_dir: Path, make_tiny_model: MakeTinyModel
) -> None:
    # Rows of 256 values: whole k-quant super-blocks, so the tensors really become Q4_K / Q6_K.
    model_dir = make_tiny_model(
        "llama", tokenizer_dir, tmp_path / "wide", hidden_size=256, intermediate_size=512
    )
    out = export_k_quant(model_dir, tmp_path / "model-q4_k_m.gguf", "q4_k_m", name="wide", quantize_tool=None)

    reader = GGUFReader(out)
    assert reader.fields["general.file_type"].contents() == gguf.LlamaFileType.MOSTLY_Q4_K_M
    assert {QType.Q4_K, QType.Q6_K} <= {tensor.tensor_type for tensor in reader.tensors}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model-q4_k_m.gguf", "wide"]
    report = verify_gguf(out, model_dir, "q4_k_m")
    assert all(check.same_token_ids for check in report.prompts)
    assert np.mean([check.top1_agreement for check in report.prompts]) > 0.5


def test_configured_quantize_tool_that_does_not_exist_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"export\.llama_quantize .*does not exist"):
        find_quantize_tool(tmp_path / "llama-quantize")
