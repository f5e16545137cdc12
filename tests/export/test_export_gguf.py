"""export_gguf: read the written file back with gguf.GGUFReader and compare it with the HF model it came from."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as QType
from gguf import GGUFReader, TokenType
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from forumtune.export.errors import ExportError
from forumtune.export.gguf_export import export_gguf
from forumtune.export.gguf_tensors import permute_for_ggml_rotary
from forumtune.export.merge import merge_adapter

FileSizeLimit = Callable[[int], AbstractContextManager[None]]
MakeTinyModel = Callable[..., Path]
OUT_TYPES = ["f32", "f16", "bf16", "q8_0"]
FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7, "bf16": 32}
BLOCK_TENSORS = [
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
    "attn_norm",
    "ffn_norm",
]
# Q8_0 stores round(x / d) with d = amax / 127 kept as float16: error <= d * (1/2 + 127 * 2**-11) per 32-value block.
Q8_0_BLOCK_ERROR_BOUND = (0.5 + 127 * 2**-11) / 127
Q8_0_MEASURED: dict[str, float] = {}


def field(reader: GGUFReader, key: str) -> Any:
    assert key in reader.fields, f"{key} missing from the GGUF header"
    return reader.fields[key].contents()


def gguf_tensors(reader: GGUFReader) -> dict[str, gguf.ReaderTensor]:
    return {tensor.name: tensor for tensor in reader.tensors}


def dequantized(tensor: gguf.ReaderTensor) -> np.ndarray:
    values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    return values.reshape(tuple(reversed([int(dim) for dim in tensor.shape])))


def undo_rotary_permutation(rows: np.ndarray, n_heads: int) -> np.ndarray:
    """Independent inverse: GGML row (head, 2i + j) holds HF row (head, j * head_dim/2 + i)."""
    head_dim = rows.shape[0] // n_heads
    half = head_dim // 2
    ggml_row_of_hf_row = [
        head * head_dim + 2 * i + j for head in range(n_heads) for j in range(2) for i in range(half)
    ]
    return rows[ggml_row_of_hf_row]


def hf_to_gguf_names(arch: gguf.MODEL_ARCH, hf_names: list[str], n_blocks: int) -> dict[str, str]:
    """llama.cpp's own HF → GGUF tensor name table, as shipped in the gguf package."""
    name_map = gguf.get_tensor_name_map(arch, n_blocks)
    return {name: name_map.get_name(name, try_suffixes=(".weight", ".bias")) for name in hf_names}


def expected_qtype(name: str, hf_shape: tuple[int, ...], out_type: str) -> QType:
    if len(hf_shape) == 1 or name.endswith("_norm.weight"):
        return QType.F32
    if out_type == "q8_0":
        return QType.Q8_0 if hf_shape[-1] % 32 == 0 else QType.F16
    return {"f32": QType.F32, "f16": QType.F16, "bf16": QType.BF16}[out_type]


def assert_stored_exactly(stored: np.ndarray, original: np.ndarray, qtype: QType) -> None:
    if qtype == QType.F32:
        np.testing.assert_array_equal(stored, original)
    elif qtype == QType.F16:
        np.testing.assert_array_equal(stored, original.astype(np.float16).astype(np.float32))
    elif qtype == QType.BF16:
        np.testing.assert_array_equal(stored, torch.from_numpy(original).to(torch.bfloat16).float().numpy())


def q8_0_block_error(stored: np.ndarray, original: np.ndarray) -> float:
    """Largest |error| / |largest value| over the 32-value blocks of each row."""
    errors = np.abs(stored - original).reshape(-1, 32).max(axis=1)
    amax = np.abs(original).reshape(-1, 32).max(axis=1)
    return float((errors / amax).max())


# --- (b) header, tensors, tokenizer ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["llama", "mistral"])
def test_header_holds_llama_hyperparameters(tmp_path: Path, merged_dirs: dict[str, Path], kind: str) -> None:
    model_dir = merged_dirs[kind]
    config = json.loads((model_dir / "config.json").read_text())
    reader = GGUFReader(export_gguf(model_dir, tmp_path / "model.gguf", name="freeski-helper"))

    assert field(reader, "general.architecture") == "llama"
    assert field(reader, "general.name") == "freeski-helper"
    assert field(reader, "general.file_type") == FILE_TYPES["f16"]
    assert field(reader, "llama.context_length") == 256
    assert field(reader, "llama.embedding_length") == 64
    assert field(reader, "llama.block_count") == 2
    assert field(reader, "llama.feed_forward_length") == config["intermediate_size"]
    assert field(reader, "llama.attention.head_count") == 4
    assert field(reader, "llama.attention.head_count_kv") == 2
    assert field(reader, "llama.rope.freq_base") == 50000.0
    assert field(reader, "llama.rope.dimension_count") == 16
    assert field(reader, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(1e-5)
    assert field(reader, "llama.vocab_size") == config["vocab_size"]


@pytest.mark.parametrize("out_type", OUT_TYPES)
@pytest.mark.parametrize("kind", ["llama", "mistral"])
def test_tensors_round_trip_to_the_merged_weights(
    tmp_path: Path, merged_dirs: dict[str, Path], kind: str, out_type: str
) -> None:
    model_dir = merged_dirs[kind]
    hf_weights = load_file(model_dir / "model.safetensors")
    reader = GGUFReader(export_gguf(model_dir, tmp_path / "model.gguf", out_type))
    stored = gguf_tensors(reader)
    names = hf_to_gguf_names(gguf.MODEL_ARCH.LLAMA, sorted(hf_weights), n_blocks=2)

    assert field(reader, "general.file_type") == FILE_TYPES[out_type]
    assert set(stored) == set(names.values())
    assert set(stored) == {"token_embd.weight", "output_norm.weight", "output.weight"} | {
        f"blk.{block}.{name}.weight" for block in range(2) for name in BLOCK_TENSORS
    }
    worst_q8_0 = 0.0
    for hf_name, gguf_name in names.items():
        original, tensor = hf_weights[hf_name], stored[gguf_name]
        assert tuple(reversed([int(dim) for dim in tensor.shape])) == original.shape, gguf_name
        assert tensor.tensor_type == expected_qtype(gguf_name, original.shape, out_type), gguf_name
        values = dequantized(tensor)
        if ".attn_q." in gguf_name or ".attn_k." in gguf_name:
            values = undo_rotary_permutation(values, n_heads=4 if ".attn_q." in gguf_name else 2)
        if tensor.tensor_type == QType.Q8_0:
            worst_q8_0 = max(worst_q8_0, q8_0_block_error(values, original))
        else:
            assert_stored_exactly(values, original, tensor.tensor_type)
    if out_type == "q8_0":
        Q8_0_MEASURED[kind] = worst_q8_0
        print(
            f"\n{kind} q8_0: max |error| / block max = {worst_q8_0:.5f} (bound {Q8_0_BLOCK_ERROR_BOUND:.5f})"
        )
        assert 0 < worst_q8_0 <= Q8_0_BLOCK_ERROR_BOUND


def test_bfloat16_merge_the_pipeline_default_exports_exactly(
    tmp_path: Path, llama_base_dir: Path, llama_adapter_dir: Path
) -> None:
    merged_dir = merge_adapter(llama_base_dir, llama_adapter_dir, tmp_path / "merged-bf16", dtype="bfloat16")
    with safe_open(merged_dir / "model.safetensors", framework="pt") as weights:
        embeddings = weights.get_tensor("model.embed_tokens.weight")
    assert embeddings.dtype == torch.bfloat16
    for out_type, qtype in (("bf16", QType.BF16), ("f16", QType.F16)):
        stored = gguf_tensors(GGUFReader(export_gguf(merged_dir, tmp_path / f"{out_type}.gguf", out_type)))
        assert stored["token_embd.weight"].tensor_type == qtype
        assert_stored_exactly(dequantized(stored["token_embd.weight"]), embeddings.float().numpy(), qtype)


def test_q8_0_falls_back_to_f16_for_rows_that_are_not_whole_blocks(
    tmp_path: Path, merged_mistral_dir: Path
) -> None:
    stored = gguf_tensors(GGUFReader(export_gguf(merged_mistral_dir, tmp_path / "model.gguf", "q8_0")))
    assert stored["blk.0.ffn_down.weight"].tensor_type == QType.F16  # rows of 144 values
    assert stored["blk.0.ffn_up.weight"].tensor_type == QType.Q8_0
    assert stored["blk.0.attn_norm.weight"].tensor_type == QType.F32


def test_byte_level_tokenizer_metadata_matches_the_hf_tokenizer(
    tmp_path: Path, merged_llama_dir: Path
) -> None:
    hf_tokenizer = AutoTokenizer.from_pretrained(merged_llama_dir)
    tokenizer_json = json.loads((merged_llama_dir / "tokenizer.json").read_text())
    reader = GGUFReader(export_gguf(merged_llama_dir, tmp_path / "model.gguf"))

    vocab_in_id_order = hf_tokenizer.convert_ids_to_tokens(list(range(len(hf_tokenizer))))
    special_ids = set(hf_tokenizer.all_special_ids)
    assert field(reader, "tokenizer.ggml.model") == "gpt2"
    assert field(reader, "tokenizer.ggml.pre") == "gpt-2"  # a lone ByteLevel(use_regex) pre-tokenizer
    assert field(reader, "tokenizer.ggml.tokens") == vocab_in_id_order
    assert field(reader, "tokenizer.ggml.token_type") == [
        TokenType.CONTROL if token_id in special_ids else TokenType.NORMAL
        for token_id in range(len(hf_tokenizer))
    ]
    assert field(reader, "tokenizer.ggml.merges") == [
        " ".join(pair) for pair in tokenizer_json["model"]["merges"]
    ]
    assert field(reader, "tokenizer.ggml.bos_token_id") == hf_tokenizer.bos_token_id
    assert field(reader, "tokenizer.ggml.eos_token_id") == hf_tokenizer.eos_token_id
    assert field(reader, "tokenizer.ggml.unknown_token_id") == hf_tokenizer.unk_token_id
    assert field(reader, "tokenizer.ggml.padding_token_id") == hf_tokenizer.pad_token_id
    adds_bos = hf_tokenizer("how do I true a wheel?").input_ids[0] == hf_tokenizer.bos_token_id
    assert field(reader, "tokenizer.ggml.add_bos_token") is adds_bos is True
    assert field(reader, "tokenizer.chat_template") == hf_tokenizer.chat_template


def test_unrecognised_byte_level_pre_tokenizer_is_written_as_default(
    tmp_path: Path, merged_llama_dir: Path
) -> None:
    model_dir = shutil.copytree(merged_llama_dir, tmp_path / "split-regex")
    tokenizer_json = json.loads((model_dir / "tokenizer.json").read_text())
    tokenizer_json["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {
                "type": "Split",
                "pattern": {"Regex": "\\p{N}{1,3}| ?\\p{L}+|\\s+"},
                "behavior": "Isolated",
                "invert": False,
            },
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        ],
    }
    (model_dir / "tokenizer.json").write_text(json.dumps(tokenizer_json))
    reader = GGUFReader(export_gguf(model_dir, tmp_path / "model.gguf"))
    assert field(reader, "tokenizer.ggml.model") == "gpt2"
    assert field(reader, "tokenizer.ggml.pre") == "default"


def test_sentencepiece_style_tokenizer_becomes_a_llama_vocab(
    tmp_path: Path, sentencepiece_tokenizer_dir: Path, make_tiny_model: MakeTinyModel
) -> None:
    model_dir = make_tiny_model("mistral", sentencepiece_tokenizer_dir, tmp_path / "spm-mistral")
    hf_tokenizer = AutoTokenizer.from_pretrained(model_dir)
    reader = GGUFReader(export_gguf(model_dir, tmp_path / "model.gguf"))

    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type")
    scores = field(reader, "tokenizer.ggml.scores")
    assert field(reader, "tokenizer.ggml.model") == "llama"
    assert tokens == hf_tokenizer.convert_ids_to_tokens(list(range(len(hf_tokenizer))))
    assert types[:3] == [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]  # <unk> <s> </s>
    assert types[3:259] == [TokenType.BYTE] * 256 and tokens[3] == "<0x00>" and tokens[258] == "<0xFF>"
    merged_scores = [
        score
        for token, kind, score in zip(tokens, types, scores)
        if kind == TokenType.NORMAL and len(token) > 1
    ]
    assert merged_scores[0] == 0.0 and all(a > b for a, b in itertools.pairwise(merged_scores))
    assert field(reader, "tokenizer.ggml.add_space_prefix") is True
    assert "tokenizer.ggml.merges" not in reader.fields
    assert field(reader, "tokenizer.chat_template") == hf_tokenizer.chat_template


def test_tied_qwen2_has_no_output_tensor_and_keeps_unpermuted_qkv_biases(
    tmp_path: Path, tokenizer_dir: Path, make_tiny_model: MakeTinyModel
) -> None:
    model_dir = make_tiny_model("qwen2", tokenizer_dir, tmp_path / "qwen2", tie_word_embeddings=True)
    hf_weights = load_file(model_dir / "model.safetensors")
    reader = GGUFReader(export_gguf(model_dir, tmp_path / "model.gguf", "f32"))
    stored = gguf_tensors(reader)

    assert field(reader, "general.architecture") == "qwen2"
    assert field(reader, "qwen2.attention.head_count_kv") == 2
    assert "output.weight" not in stored
    assert set(stored) == set(
        hf_to_gguf_names(gguf.MODEL_ARCH.QWEN2, sorted(hf_weights), n_blocks=2).values()
    )
    for projection in ("q", "k", "v"):
        bias = stored[f"blk.1.attn_{projection}.bias"]
        assert bias.tensor_type == QType.F32
        np.testing.assert_array_equal(
            dequantized(bias), hf_weights[f"model.layers.1.self_attn.{projection}_proj.bias"]
        )
    np.testing.assert_array_equal(
        dequantized(stored["blk.0.attn_q.weight"]), hf_weights["model.layers.0.self_attn.q_proj.weight"]
    )


def test_llama3_rope_scaling_is_written_as_rope_freqs_matching_transformers(
    tmp_path: Path, tokenizer_dir: Path, make_tiny_model: MakeTinyModel
) -> None:
    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0}
    rope |= {"high_freq_factor": 4.0, "original_max_position_embeddings": 64}  # head_dim 16 spans all 3 bands
    model_dir = make_tiny_model("llama", tokenizer_dir, tmp_path / "llama3", rope_parameters=rope)
    stored = gguf_tensors(GGUFReader(export_gguf(model_dir, tmp_path / "model.gguf")))

    rope_freqs = dequantized(stored["rope_freqs.weight"])
    plain_inv_freq = 1.0 / (500000.0 ** (np.arange(0, 16, 2) / 16))
    scaled_inv_freq, _ = ROPE_INIT_FUNCTIONS["llama3"](LlamaConfig.from_pretrained(model_dir), "cpu")
    np.testing.assert_allclose(plain_inv_freq / rope_freqs, scaled_inv_freq.numpy(), rtol=1e-5)
    assert rope_freqs[0] == 1.0 and rope_freqs[-1] == 8.0 and 1.0 < rope_freqs[1] < 8.0


def test_permutation_turns_hf_rotate_half_rope_into_ggml_adjacent_pair_rope() -> None:
    n_heads, head_dim, position = 4, 16, 7
    rng = np.random.default_rng(0)
    weights, hidden = rng.standard_normal((n_heads * head_dim, 64)), rng.standard_normal(64)
    angles = position * 10000.0 ** (-np.arange(0, head_dim, 2) / head_dim)

    q = (weights @ hidden).reshape(n_heads, head_dim)
    first, second = q[:, : head_dim // 2], q[:, head_dim // 2 :]
    hf_rotated = np.concatenate(
        [first * np.cos(angles) - second * np.sin(angles), second * np.cos(angles) + first * np.sin(angles)],
        axis=1,
    )
    q_ggml = (permute_for_ggml_rotary(weights, n_heads) @ hidden).reshape(n_heads, head_dim)
    even, odd = q_ggml[:, 0::2], q_ggml[:, 1::2]
    ggml_rotated = np.empty_like(q_ggml)
    ggml_rotated[:, 0::2] = even * np.cos(angles) - odd * np.sin(angles)
    ggml_rotated[:, 1::2] = odd * np.cos(angles) + even * np.sin(angles)

    np.testing.assert_allclose(
        undo_rotary_permutation(ggml_rotated.reshape(-1), n_heads), hf_rotated.reshape(-1)
    )


# --- (c) errors ------------------------------------------------------------------------------------


def test_unsupported_architecture_is_reported(tmp_path: Path, tokenizer_dir: Path) -> None:
    model_dir = tmp_path / "gpt2"
    GPT2LMHeadModel(
        GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=388, n_positions=64)
    ).save_pretrained(model_dir)
    with pytest.raises(
        ExportError, match=r"GPT2LMHeadModel.*not supported.*LlamaForCausalLM.*convert_hf_to_gguf"
    ):
        export_gguf(model_dir, tmp_path / "model.gguf")
    assert not (tmp_path / "model.gguf").exists()


def test_unknown_out_type_is_reported(tmp_path: Path, merged_llama_dir: Path) -> None:
    with pytest.raises(ExportError, match=r"out_type 'q4_k'.*'q8_0'"):
        export_gguf(merged_llama_dir, tmp_path / "model.gguf", "q4_k")


def test_directory_without_config_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"config\.json not found"):
        export_gguf(tmp_path, tmp_path / "model.gguf")


def test_pickled_checkpoint_is_refused(tmp_path: Path, merged_llama_dir: Path) -> None:
    model_dir = tmp_path / "bin-only"
    model_dir.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (model_dir / name).write_bytes((merged_llama_dir / name).read_bytes())
    with pytest.raises(ExportError, match=r"no model\.safetensors.*pickled"):
        export_gguf(model_dir, tmp_path / "model.gguf")


def test_incomplete_checkpoint_is_reported(tmp_path: Path, merged_llama_dir: Path) -> None:
    model_dir = shutil.copytree(merged_llama_dir, tmp_path / "incomplete")
    weights = load_file(model_dir / "model.safetensors")
    del weights["model.layers.1.mlp.down_proj.weight"]
    save_file(weights, model_dir / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ExportError, match=r"lacks 1 tensor.*blk\.1\.ffn_down\.weight"):
        export_gguf(model_dir, tmp_path / "model.gguf")


# --- (d) atomic output -----------------------------------------------------------------------------


def test_failed_export_keeps_the_previous_file_and_leaves_no_partial(
    tmp_path: Path, merged_llama_dir: Path, file_size_limit: FileSizeLimit
) -> None:
    out_path = tmp_path / "model.gguf"
    out_path.write_bytes(b"previous export")
    with (
        file_size_limit(128 * 1024),
        pytest.raises(ExportError, match=r"could not write .*model\.gguf.*disk space"),
    ):
        export_gguf(merged_llama_dir, out_path, "f32")  # ~0.5 MB of tensors: fails part-way through the data
    assert out_path.read_bytes() == b"previous export"
    assert [path.name for path in tmp_path.iterdir()] == ["model.gguf"]

    export_gguf(merged_llama_dir, out_path, "f32")
    assert GGUFReader(out_path).fields["general.architecture"].contents() == "llama"


def test_killed_export_leaves_no_out_file(tmp_path: Path, merged_llama_dir: Path) -> None:
    pytest.importorskip("resource", reason="needs POSIX file size limits")
    out_path = tmp_path / "model.gguf"
    # Past 128 KiB the kernel kills the exporter with SIGXFSZ (Python ignores it by default; restore the
    # default action), in the middle of the tensor data: no cleanup code gets to run.
    script = (
        "import resource, signal, sys; from pathlib import Path; from forumtune.export.gguf_export import export_gguf; "
        "signal.signal(signal.SIGXFSZ, signal.SIG_DFL); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (128 * 1024, 128 * 1024)); "
        "export_gguf(Path(sys.argv[1]), Path(sys.argv[2]), 'f32')"
    )
    environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script, str(merged_llama_dir), str(out_path)],
        env=environment,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == -signal.SIGXFSZ, result.stderr.decode()[-2000:]
    assert not out_path.exists()
    partials = list(tmp_path.glob(".model.gguf.partial-*"))
    assert len(partials) == 1 and partials[0].stat().st_size == 128 * 1024  # it really died mid-write
