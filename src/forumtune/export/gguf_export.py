"""Write a merged Llama-family Hugging Face model directory as a single GGUF file for llama.cpp.

Mirrors llama.cpp's convert_hf_to_gguf.py for LlamaForCausalLM / MistralForCausalLM ("llama") and
Qwen2ForCausalLM ("qwen2"): tensor names, the rotary q/k permutation, hyperparameter keys, tensor types
and tokenizer metadata.
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType, TokenType
from rich.progress import track
from safetensors import safe_open
from tokenizers import Tokenizer

from forumtune.export.errors import ExportError

GGUF_ARCH_BY_HF_ARCH: dict[str, str] = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
}
# Architectures whose q/k weights llama.cpp expects permuted to its interleaved rotary layout.
PERMUTED_QK_ARCHS = {"llama"}

OUT_TYPES: dict[str, tuple[GGMLQuantizationType, LlamaFileType]] = {
    "f32": (GGMLQuantizationType.F32, LlamaFileType.ALL_F32),
    "f16": (GGMLQuantizationType.F16, LlamaFileType.MOSTLY_F16),
    "bf16": (GGMLQuantizationType.BF16, LlamaFileType.MOSTLY_BF16),
    "q8_0": (GGMLQuantizationType.Q8_0, LlamaFileType.MOSTLY_Q8_0),
}

TOP_LEVEL_TENSORS = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
BLOCK_TENSORS = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}
BLOCK_TENSOR_NAME = re.compile(r"^model\.layers\.(\d+)\.(.+)\.(weight|bias)$")
TOP_LEVEL_TENSOR_NAME = re.compile(r"^(.+)\.(weight|bias)$")
IGNORED_TENSOR_SUFFIXES = ("rotary_emb.inv_freq",)
SUPPORTED_ROPE_TYPES = {"default", "linear", "yarn", "llama3"}

# llama.cpp identifies a byte-level BPE pre-tokenizer by hashing the token ids of this text
# (convert_hf_to_gguf.py, get_vocab_base_pre); these are its hashes for the bases forumtune targets.
PRE_TOKENIZER_CHECK_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d\U0001f32b\ufe0f (multiple emojis "
    "concatenated) ✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 "
    "?我想在apple工作1314151天～ ------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? "
    "I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)
PRE_TOKENIZER_BY_HASH = {
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",
    "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2",
    "b3f499bb4255f8ca19fccd664443283318f2fd2414d5e0b040fbdd0cc195d6c5": "deepseek-r1-qwen",
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",
    "63b97e4253352e6f357cc59ea5b583e3a680eaeaf2632188c2b952de2588485e": "tekken",
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
}
GPT2_PRE_TOKENIZER = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


@dataclass(frozen=True)
class TensorPlan:
    """One tensor of the output file: its GGUF name, shape, storage type and how to produce its data."""

    name: str
    shape: tuple[int, ...]
    qtype: GGMLQuantizationType
    load: Callable[[], np.ndarray]

    @property
    def nbytes(self) -> int:
        block_size, type_size = gguf.GGML_QUANT_SIZES[self.qtype]
        return math.prod(self.shape) // block_size * type_size


def export_gguf(model_dir: Path, out_path: Path, out_type: str = "f16") -> Path:
    """Convert the Hugging Face model in `model_dir` to GGUF at `out_path` (out_type: f32, f16, bf16, q8_0).

    The file is written beside `out_path` and renamed into place only once complete.
    """
    model_dir, out_path = Path(model_dir), Path(out_path)
    target_qtype, file_type = out_type_named(out_type)
    config = read_json(model_dir / "config.json", "the merged model's config")
    arch = gguf_arch_for(config, model_dir)
    writer = GGUFWriter(path=None, arch=arch)
    add_hyperparameters(writer, config, model_dir, file_type)
    add_tokenizer(writer, model_dir, vocab_size=require(config, "vocab_size", model_dir))
    with ExitStack() as open_files:
        plans = plan_tensors(model_dir, config, arch, target_qtype, open_files)
        for plan in plans:
            writer.add_tensor_info(
                plan.name, plan.shape, np.dtype(np.float32), plan.nbytes, raw_dtype=plan.qtype
            )
        with atomic_output(out_path) as partial_path:
            try:
                write_gguf(writer, plans, partial_path, description=f"GGUF {out_type} → {out_path.name}")
            except OSError as error:
                raise ExportError(f"could not write {out_path}: {error}; check free disk space.") from error
    return out_path


def out_type_named(out_type: str) -> tuple[GGMLQuantizationType, LlamaFileType]:
    if out_type not in OUT_TYPES:
        raise ExportError(f"out_type {out_type!r} is not supported; use one of {sorted(OUT_TYPES)}.")
    return OUT_TYPES[out_type]


def read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ExportError(
            f"{path} not found: {what} is required; export a directory written by merge_adapter."
        )
    with path.open(encoding="utf-8") as file:
        return json.load(file)


def require(config: dict[str, Any], key: str, model_dir: Path) -> Any:
    if key not in config:
        raise ExportError(f"{model_dir / 'config.json'} has no {key!r}; the GGUF header needs it.")
    return config[key]


def gguf_arch_for(config: dict[str, Any], model_dir: Path) -> str:
    architectures = config.get("architectures") or []
    for hf_arch in architectures:
        if hf_arch in GGUF_ARCH_BY_HF_ARCH:
            return GGUF_ARCH_BY_HF_ARCH[hf_arch]
    raise ExportError(
        f"architecture {architectures} in {model_dir / 'config.json'} is not supported by the GGUF exporter; "
        f"supported: {sorted(GGUF_ARCH_BY_HF_ARCH)}. Use llama.cpp's convert_hf_to_gguf.py for other models."
    )


# --- hyperparameters -------------------------------------------------------------------------------


def add_hyperparameters(
    writer: GGUFWriter, config: dict[str, Any], model_dir: Path, file_type: LlamaFileType
) -> None:
    n_head = require(config, "num_attention_heads", model_dir)
    hidden_size = require(config, "hidden_size", model_dir)
    head_dim = config.get("head_dim") or hidden_size // n_head
    writer.add_type("model")
    writer.add_name(model_dir.name)
    writer.add_context_length(require(config, "max_position_embeddings", model_dir))
    writer.add_embedding_length(hidden_size)
    writer.add_block_count(require(config, "num_hidden_layers", model_dir))
    writer.add_feed_forward_length(require(config, "intermediate_size", model_dir))
    writer.add_head_count(n_head)
    writer.add_head_count_kv(config.get("num_key_value_heads") or n_head)
    writer.add_layer_norm_rms_eps(require(config, "rms_norm_eps", model_dir))
    writer.add_vocab_size(require(config, "vocab_size", model_dir))
    writer.add_rope_dimension_count(head_dim)
    if config.get("head_dim"):
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    add_rope_parameters(writer, rope_parameters(config), model_dir)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def rope_parameters(config: dict[str, Any]) -> dict[str, Any]:
    """transformers 5 keeps rope settings in `rope_parameters`; older configs use rope_theta + rope_scaling."""
    params = config.get("rope_parameters")
    if params is None:
        params = {"rope_theta": config.get("rope_theta", 10000.0), **(config.get("rope_scaling") or {})}
    params = params.get("full_attention", params)
    rope_type = params.get("rope_type", params.get("type")) or "default"
    return {**params, "rope_type": rope_type}


def add_rope_parameters(writer: GGUFWriter, rope: dict[str, Any], model_dir: Path) -> None:
    rope_type = rope["rope_type"]
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise ExportError(
            f"rope_type {rope_type!r} in {model_dir / 'config.json'} is not supported by the GGUF exporter "
            f"(supported: {sorted(SUPPORTED_ROPE_TYPES)}); use llama.cpp's convert_hf_to_gguf.py."
        )
    writer.add_rope_freq_base(rope.get("rope_theta", 10000.0))
    if rope_type == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(rope["factor"])
    elif rope_type == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(rope["factor"])
        writer.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
    # llama3 scaling is carried by the rope_freqs tensor instead (see llama3_rope_factors).


def llama3_rope_factors(config: dict[str, Any], rope: dict[str, Any]) -> np.ndarray:
    """Per-frequency divisors llama.cpp applies for Llama 3.1-style rope scaling (its rope_freqs tensor)."""
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    base = rope.get("rope_theta", 10000.0)
    factor = rope.get("factor", 8.0)
    low_freq_factor = rope.get("low_freq_factor", 1.0)
    high_freq_factor = rope.get("high_freq_factor", 4.0)
    old_context = rope.get(
        "original_max_position_embeddings", config.get("original_max_position_embeddings", 8192)
    )
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old_context / high_freq_factor:
            factors.append(1.0)
        elif wavelen > old_context / low_freq_factor:
            factors.append(factor)
        else:
            smooth = (old_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(factors, dtype=np.float32)


# --- tensors ---------------------------------------------------------------------------------------


def plan_tensors(
    model_dir: Path, config: dict[str, Any], arch: str, target: GGMLQuantizationType, open_files: ExitStack
) -> list[TensorPlan]:
    plans = []
    for hf_name, handle in open_safetensors(model_dir, open_files).items():
        if hf_name.endswith(IGNORED_TENSOR_SUFFIXES):
            continue
        if hf_name.startswith("lm_head.") and config.get("tie_word_embeddings", False):
            continue  # tied: llama.cpp reuses token_embd when the output tensor is absent
        name = gguf_tensor_name(hf_name, model_dir)
        shape = tuple(handle.get_slice(hf_name).get_shape())
        n_heads = rotary_heads(hf_name, config) if arch in PERMUTED_QK_ARCHS else None
        load = tensor_loader(handle, hf_name, n_heads)
        plans.append(TensorPlan(name, shape, tensor_qtype(name, shape, target), load))
    check_no_tensor_missing({plan.name for plan in plans}, config, model_dir)
    rope = rope_parameters(config)
    if rope["rope_type"] == "llama3":
        factors = llama3_rope_factors(config, rope)
        plans.append(
            TensorPlan("rope_freqs.weight", factors.shape, GGMLQuantizationType.F32, lambda: factors)
        )
    return sorted(plans, key=tensor_order)


def check_no_tensor_missing(names: set[str], config: dict[str, Any], model_dir: Path) -> None:
    """llama.cpp would fail to load (or, for a missing output, silently reuse token_embd): catch it here."""
    expected = {"token_embd.weight", "output_norm.weight"}
    if not config.get("tie_word_embeddings", False):
        expected.add("output.weight")
    for block in range(require(config, "num_hidden_layers", model_dir)):
        expected.update(f"blk.{block}.{name}.weight" for name in BLOCK_TENSORS.values())
    if missing := sorted(expected - names):
        raise ExportError(
            f"{model_dir} lacks {len(missing)} tensor(s) the GGUF needs, e.g. {missing[:3]}; "
            "the checkpoint is incomplete or a shard is missing. Re-run merge_adapter."
        )


def open_safetensors(model_dir: Path, open_files: ExitStack) -> dict[str, Any]:
    """Map every tensor name to the open safetensors file that holds it (single file or sharded)."""
    index_path = model_dir / "model.safetensors.index.json"
    if index_path.is_file():
        weight_map: dict[str, str] = read_json(index_path, "the shard index")["weight_map"]
        files = sorted(set(weight_map.values()))
    elif (model_dir / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise ExportError(
            f"{model_dir} has no model.safetensors or model.safetensors.index.json; pickled .bin checkpoints "
            "are not read. Re-save the model with save_pretrained (merge_adapter writes safetensors)."
        )
    handles = {}
    for file_name in files:
        handle = open_files.enter_context(safe_open(model_dir / file_name, framework="pt"))
        handles.update(dict.fromkeys(handle.keys(), handle))
    return handles


def gguf_tensor_name(hf_name: str, model_dir: Path) -> str:
    if block_match := BLOCK_TENSOR_NAME.match(hf_name):
        block, module, kind = block_match.groups()
        if module in BLOCK_TENSORS:
            return f"blk.{block}.{BLOCK_TENSORS[module]}.{kind}"
    elif (top_match := TOP_LEVEL_TENSOR_NAME.match(hf_name)) and top_match.group(1) in TOP_LEVEL_TENSORS:
        return f"{TOP_LEVEL_TENSORS[top_match.group(1)]}.{top_match.group(2)}"
    raise ExportError(
        f"tensor {hf_name!r} in {model_dir} has no GGUF counterpart; the checkpoint does not look like a plain "
        "Llama/Mistral/Qwen2 model (was the adapter merged with merge_adapter?)."
    )


def rotary_heads(hf_name: str, config: dict[str, Any]) -> int | None:
    if ".self_attn.q_proj." in hf_name:
        return config["num_attention_heads"]
    if ".self_attn.k_proj." in hf_name:
        return config.get("num_key_value_heads") or config["num_attention_heads"]
    return None


def permute_for_ggml_rotary(weights: np.ndarray, n_heads: int) -> np.ndarray:
    """Reorder q/k rows from HF's rotate-half layout (pairs i, i + d/2) to GGML's adjacent pairs (2i, 2i + 1)."""
    rows = weights.shape[0]
    if rows % (2 * n_heads):
        raise ExportError(f"q/k projection with {rows} rows cannot be split into {n_heads} rotary heads.")
    per_head = weights.reshape(n_heads, 2, rows // n_heads // 2, *weights.shape[1:])
    return per_head.swapaxes(1, 2).reshape(weights.shape)


def tensor_loader(handle: Any, hf_name: str, n_heads: int | None) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        data = handle.get_tensor(hf_name).to(torch.float32).numpy()
        return permute_for_ggml_rotary(data, n_heads) if n_heads else data

    return load


def tensor_qtype(name: str, shape: tuple[int, ...], target: GGMLQuantizationType) -> GGMLQuantizationType:
    """llama.cpp's rule: norms and other 1-D tensors stay F32; Q8_0 needs rows of whole 32-value blocks."""
    if len(shape) <= 1 or name.endswith("_norm.weight"):
        return GGMLQuantizationType.F32
    block_size, _ = gguf.GGML_QUANT_SIZES[target]
    if shape[-1] % block_size:
        return GGMLQuantizationType.F16
    return target


def tensor_order(plan: TensorPlan) -> tuple[int, int, str]:
    if plan.name.startswith("blk."):
        return (1, int(plan.name.split(".")[1]), plan.name)
    if plan.name.startswith(("token_embd", "rope_freqs")):
        return (0, 0, plan.name)
    return (2, 0, plan.name)


def encode_tensor(data: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    return gguf.quants.quantize(np.ascontiguousarray(data, dtype=np.float32), qtype)


# --- writing ---------------------------------------------------------------------------------------


def write_gguf(writer: GGUFWriter, plans: list[TensorPlan], path: Path, description: str) -> None:
    """Header, metadata and tensor index first, then tensor data one tensor at a time (bounded memory)."""
    try:
        writer.write_header_to_file(path)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for plan in track(plans, description=description, transient=True):
            writer.write_tensor_data(encode_tensor(plan.load(), plan.qtype))
        writer.flush()
        for file in writer.fout or []:
            os.fsync(file.fileno())
    finally:
        writer.close()


@contextmanager
def atomic_output(out_path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `out_path`; rename it over `out_path` on success, delete it on failure."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial_path = out_path.with_name(f".{out_path.name}.partial-{uuid.uuid4().hex[:12]}")
    try:
        yield partial_path
        os.replace(partial_path, out_path)
    except BaseException:
        partial_path.unlink(missing_ok=True)
        raise


# --- tokenizer -------------------------------------------------------------------------------------


def add_tokenizer(writer: GGUFWriter, model_dir: Path, vocab_size: int) -> None:
    tokenizer_json = read_json(model_dir / "tokenizer.json", "a fast tokenizer file (tokenizer.json)")
    bpe_model = tokenizer_json.get("model", {})
    if bpe_model.get("type") != "BPE":
        raise ExportError(
            f"{model_dir / 'tokenizer.json'} holds a {bpe_model.get('type')!r} model; only BPE tokenizers "
            "(byte-level like Llama 3/Qwen2, or SentencePiece-style like Llama 2/Mistral) are exported."
        )
    if is_byte_level(tokenizer_json):
        add_byte_level_vocab(writer, model_dir, tokenizer_json, vocab_size)
    elif is_sentencepiece_style(tokenizer_json):
        add_sentencepiece_vocab(writer, tokenizer_json, vocab_size)
    else:
        raise ExportError(
            f"{model_dir / 'tokenizer.json'} is neither byte-level BPE nor SentencePiece-style BPE (▁ metaspace "
            "with byte fallback); the GGUF exporter cannot describe it to llama.cpp."
        )
    special_vocab = gguf.SpecialVocab(
        model_dir, load_merges=is_byte_level(tokenizer_json), n_vocab=vocab_size
    )
    # HF only adds BOS/EOS when tokenizer_config or the post-processor says so; make that explicit for llama.cpp.
    special_vocab.add_special_token.setdefault("bos", False)
    special_vocab.add_special_token.setdefault("eos", False)
    special_vocab.add_to_gguf(writer, quiet=True)


def is_byte_level(tokenizer_json: dict[str, Any]) -> bool:
    components = [tokenizer_json.get("pre_tokenizer"), tokenizer_json.get("decoder")]
    return any(component_types(component) & {"ByteLevel"} for component in components)


def is_sentencepiece_style(tokenizer_json: dict[str, Any]) -> bool:
    if tokenizer_json["model"].get("byte_fallback"):
        return True
    components = [tokenizer_json.get(key) for key in ("normalizer", "pre_tokenizer", "decoder")]
    return any(component_types(component) & {"Metaspace"} for component in components)


def component_types(component: dict[str, Any] | None) -> set[str]:
    """Type names of a tokenizer.json component, looking inside Sequence wrappers."""
    if not component:
        return set()
    nested = component.get("pretokenizers") or component.get("decoders") or component.get("normalizers") or []
    return {component.get("type", "")}.union(*(component_types(child) for child in nested))


def id_to_token(
    tokenizer_json: dict[str, Any], vocab_size: int, model_dir: Path | None = None
) -> dict[int, str]:
    tokens = {token_id: token for token, token_id in tokenizer_json["model"]["vocab"].items()}
    tokens.update({added["id"]: added["content"] for added in tokenizer_json.get("added_tokens", [])})
    if tokens and max(tokens) >= vocab_size:
        raise ExportError(
            f"tokenizer has token id {max(tokens)} but config.json vocab_size is {vocab_size}"
            f"{f' in {model_dir}' if model_dir else ''}; resize the model's embeddings to the tokenizer."
        )
    return tokens


def looks_like_control_token(token: str) -> bool:
    # llama.cpp's does_token_look_special: some models forget special=True on their chat markers.
    return token in ("<pad>", "<mask>") or (token.startswith("<|") and token.endswith("|>"))


def added_token_types(tokenizer_json: dict[str, Any]) -> dict[int, TokenType]:
    return {
        added["id"]: TokenType.CONTROL
        if added.get("special") or looks_like_control_token(added["content"])
        else TokenType.USER_DEFINED
        for added in tokenizer_json.get("added_tokens", [])
    }


def add_byte_level_vocab(
    writer: GGUFWriter, model_dir: Path, tokenizer_json: dict[str, Any], vocab_size: int
) -> None:
    tokens_by_id = id_to_token(tokenizer_json, vocab_size, model_dir)
    added_types = added_token_types(tokenizer_json)
    tokens, types = [], []
    for token_id in range(vocab_size):
        if token_id not in tokens_by_id:
            tokens.append(f"[PAD{token_id}]")
            types.append(TokenType.UNUSED)
        else:
            tokens.append(tokens_by_id[token_id])
            types.append(added_types.get(token_id, TokenType.NORMAL))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(model_dir / "tokenizer.json", tokenizer_json))
    writer.add_token_list(tokens)
    writer.add_token_types(types)


def pre_tokenizer_name(tokenizer_path: Path, tokenizer_json: dict[str, Any]) -> str:
    """llama.cpp's name for how the text is split before BPE: a known model's, else read from the config."""
    token_ids = Tokenizer.from_file(str(tokenizer_path)).encode(PRE_TOKENIZER_CHECK_TEXT).ids
    known = PRE_TOKENIZER_BY_HASH.get(sha256(str(token_ids).encode()).hexdigest())
    if known:
        return known
    pre_tokenizer = tokenizer_json.get("pre_tokenizer") or {}
    if all(pre_tokenizer.get(key) == value for key, value in GPT2_PRE_TOKENIZER.items()):
        return "gpt-2"  # a lone ByteLevel step splits with exactly GPT-2's regex
    return "default"


def add_sentencepiece_vocab(writer: GGUFWriter, tokenizer_json: dict[str, Any], vocab_size: int) -> None:
    tokens_by_id = id_to_token(tokenizer_json, vocab_size)
    added_types = added_token_types(tokenizer_json)
    scores_by_token = merge_scores(tokenizer_json["model"].get("merges", []))
    unk_token = tokenizer_json["model"].get("unk_token")
    tokens, scores, types = [], [], []
    for token_id in range(vocab_size):
        token = tokens_by_id.get(token_id)
        if token is None:
            token_type = TokenType.UNUSED
        elif token == unk_token:
            token_type = TokenType.UNKNOWN
        elif token_id in added_types:
            token_type = added_types[token_id]
        else:
            token_type = TokenType.BYTE if BYTE_TOKEN.fullmatch(token) else TokenType.NORMAL
        tokens.append(f"[PAD{token_id}]" if token is None else token)
        types.append(token_type)
        scores.append(scores_by_token.get(token, 0.0) if token_type == TokenType.NORMAL else 0.0)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    if (space_prefix := adds_space_prefix(tokenizer_json)) is not None:
        writer.add_add_space_prefix(space_prefix)


def merge_scores(merges: list[Any]) -> dict[str, float]:
    """Score each merged token by its merge rank, so llama.cpp's SPM tokenizer merges in the same order as HF."""
    scores: dict[str, float] = {}
    for rank, merge in enumerate(merges):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        scores.setdefault(left + right, -float(rank))
    return scores


def adds_space_prefix(tokenizer_json: dict[str, Any]) -> bool | None:
    """Whether the tokenizer prepends '▁' to the text (Llama 2's Prepend normalizer or a Metaspace prefix)."""
    if "Prepend" in component_types(tokenizer_json.get("normalizer")):
        return True
    pre_tokenizer = tokenizer_json.get("pre_tokenizer") or {}
    metaspaces = [pre_tokenizer, *pre_tokenizer.get("pretokenizers", [])]
    for metaspace in (item for item in metaspaces if item.get("type") == "Metaspace"):
        if "prepend_scheme" in metaspace:
            return metaspace["prepend_scheme"] != "never"
        return bool(metaspace.get("add_prefix_space", True))
    return None
