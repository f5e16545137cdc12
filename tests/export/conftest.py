"""Tiny real models, tokenizers and LoRA adapters on disk for the merge and GGUF export tests."""

from __future__ import annotations

import itertools
import json
import signal
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    MistralConfig,
    PreTrainedConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from forumtune.export.merge import merge_adapter

SPECIAL_TOKENS = ["<s>", "</s>", "<unk>", "<pad>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<s>{{ message['role'] }}\n{{ message['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)
# The decoder of Llama 2's tokenizer.json: ▁ back to spaces, <0xNN> tokens back to bytes.
LLAMA2_DECODER = {
    "type": "Sequence",
    "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0},
    ],
}
LLAMA2_NORMALIZER = {
    "type": "Sequence",
    "normalizers": [
        {"type": "Prepend", "prepend": "▁"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
    ],
}
CONFIG_CLASSES: dict[str, type[PreTrainedConfig]] = {
    "llama": LlamaConfig,
    "mistral": MistralConfig,
    "qwen2": Qwen2Config,
}


def forum_sentences() -> list[str]:
    """A few hundred short, varied forum-style lines to train the tiny tokenizers on."""
    subjects = ["my bike", "the chain", "this fork", "our club", "a new user", "the moderator", "your wheel"]
    verbs = ["needs", "squeaks after", "broke during", "was fixed by", "asks about", "ignores"]
    objects = [
        "a long ride",
        "rain",
        "the 2019 update",
        "cheap oil",
        "tubeless tyres",
        "thread #42",
        "gear 11",
    ]
    endings = ["?", "!", ".", " - any ideas?", " :)", " (solved)"]
    combos = itertools.product(subjects, verbs, objects, endings)
    return [
        f"{subject.capitalize()} {verb} {obj}{end}"
        for subject, verb, obj, end in itertools.islice(combos, 0, None, 4)
    ]


def train_byte_level_bpe(vocab_size: int = 400) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B:1", special_tokens=[("<s>", 0)]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(forum_sentences(), trainer)
    return tokenizer


def train_sentencepiece_style_bpe(vocab_size: int = 200) -> Tokenizer:
    """Llama 2 / Mistral style: ▁ metaspace BPE with <0xNN> byte-fallback tokens right after the specials."""
    specials = ["<unk>", "<s>", "</s>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    draft = Tokenizer(models.BPE(unk_token="<unk>"))
    draft.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    draft.train_from_iterator(forum_sentences(), trainer)
    spec = json.loads(draft.to_str())
    byte_tokens = [f"<0x{value:02X}>" for value in range(256)]
    learned = sorted(
        (token_id, token) for token, token_id in spec["model"]["vocab"].items() if token not in specials
    )
    ordered = [*specials, *byte_tokens, *(token for _, token in learned)]
    spec["model"].update(
        vocab={token: token_id for token_id, token in enumerate(ordered)}, byte_fallback=True
    )
    spec["model"]["fuse_unk"] = True
    spec["added_tokens"] = [
        {**added, "id": ordered.index(added["content"])} for added in spec["added_tokens"]
    ]
    spec["decoder"] = LLAMA2_DECODER
    # Llama 2's layout: no pre-split on spaces (llama.cpp's SPM tokenizer does none), ▁ put in by the normalizer.
    spec["pre_tokenizer"] = None
    spec["normalizer"] = LLAMA2_NORMALIZER
    return Tokenizer.from_str(json.dumps(spec))


def save_tokenizer(tokenizer: Tokenizer, directory: Path, chat_template: str = CHAT_TEMPLATE) -> Path:
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>" if tokenizer.token_to_id("<pad>") is not None else None,
    )
    fast.chat_template = chat_template
    fast.save_pretrained(directory)
    return directory


def save_tiny_model(
    kind: str, tokenizer_dir: Path, directory: Path, seed: int = 0, **overrides: object
) -> Path:
    """A randomly initialised 2-layer model of a real architecture, saved with its tokenizer."""
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tokenizer_dir)
    settings = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_type": "default", "rope_theta": 50000.0},
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = CONFIG_CLASSES[kind](**{**settings, **overrides})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():  # norms start as all ones: perturb every tensor so each one is distinct
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def save_lora_adapter(base_dir: Path, directory: Path, seed: int = 1, **lora_options: Any) -> Path:
    """A LoRA (or DoRA, with use_dora=True) with random non-zero B, so merging it changes the model."""
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    torch.manual_seed(seed)
    settings = {"r": 8, "lora_alpha": 16, "target_modules": "all-linear", "init_lora_weights": False}
    peft_model = get_peft_model(model, LoraConfig(**{**settings, **lora_options}))
    if lora_options.get("use_dora"):  # DoRA starts at the base's row norms: move them so the test sees them
        with torch.no_grad():
            for name, parameter in peft_model.named_parameters():
                if "lora_magnitude_vector" in name:
                    parameter.mul_(1 + 0.2 * torch.rand_like(parameter))
    peft_model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tokenizer(train_byte_level_bpe(), tmp_path_factory.mktemp("byte_level_tokenizer"))


@pytest.fixture(scope="session")
def sentencepiece_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tokenizer(train_sentencepiece_style_bpe(), tmp_path_factory.mktemp("sentencepiece_tokenizer"))


@pytest.fixture(scope="session")
def llama_base_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    return save_tiny_model("llama", tokenizer_dir, tmp_path_factory.mktemp("llama-base"))


@pytest.fixture(scope="session")
def mistral_base_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    # Rows of 144 values are not whole Q8_0 blocks: ffn_down must fall back to F16.
    return save_tiny_model(
        "mistral", tokenizer_dir, tmp_path_factory.mktemp("mistral-base"), intermediate_size=144
    )


@pytest.fixture(scope="session")
def llama_adapter_dir(tmp_path_factory: pytest.TempPathFactory, llama_base_dir: Path) -> Path:
    return save_lora_adapter(llama_base_dir, tmp_path_factory.mktemp("llama-adapter"))


@pytest.fixture(scope="session")
def mistral_adapter_dir(tmp_path_factory: pytest.TempPathFactory, mistral_base_dir: Path) -> Path:
    return save_lora_adapter(mistral_base_dir, tmp_path_factory.mktemp("mistral-adapter"))


@pytest.fixture(scope="session")
def merged_llama_dir(
    tmp_path_factory: pytest.TempPathFactory, llama_base_dir: Path, llama_adapter_dir: Path
) -> Path:
    out_dir = tmp_path_factory.mktemp("merged") / "forum-llama"
    return merge_adapter(llama_base_dir, llama_adapter_dir, out_dir, dtype="float32")


@pytest.fixture(scope="session")
def merged_mistral_dir(
    tmp_path_factory: pytest.TempPathFactory, mistral_base_dir: Path, mistral_adapter_dir: Path
) -> Path:
    out_dir = tmp_path_factory.mktemp("merged") / "forum-mistral"
    return merge_adapter(mistral_base_dir, mistral_adapter_dir, out_dir, dtype="float32")


@pytest.fixture(scope="session")
def merged_dirs(merged_llama_dir: Path, merged_mistral_dir: Path) -> dict[str, Path]:
    return {"llama": merged_llama_dir, "mistral": merged_mistral_dir}


@contextmanager
def limited_file_size(max_bytes: int) -> Iterator[None]:
    """Make this process's writes past `max_bytes` fail with EFBIG, as a full disk would."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)


@pytest.fixture
def file_size_limit() -> Callable[[int], AbstractContextManager[None]]:
    pytest.importorskip("resource", reason="file size limits need a POSIX system")
    return limited_file_size


@pytest.fixture
def make_tiny_model() -> Callable[..., Path]:
    return save_tiny_model


@pytest.fixture
def make_adapter() -> Callable[..., Path]:
    return save_lora_adapter
