"""The tokenizer as GGUF metadata: vocabulary, token types, merges or scores, special ids, chat template.

Byte-level BPE (Llama 3, Qwen2) becomes llama.cpp's "gpt2" model; SentencePiece-style BPE with ▁ and
byte fallback (Llama 2, Mistral) becomes its "llama" model.
"""

from __future__ import annotations

import re
from hashlib import sha256
from pathlib import Path
from typing import Any

import gguf
from gguf import GGUFWriter, TokenType
from tokenizers import Tokenizer

from forumtune.export.errors import ExportError
from forumtune.export.files import read_json

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
