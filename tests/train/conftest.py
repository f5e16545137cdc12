"""A small built dataset written the way the build stage writes it, so train tests need no scrape."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from transformers import MistralConfig

from forumtune.config import Config, load_config
from forumtune.data.encode import encode_conversation
from forumtune.records import write_jsonl
from tests.conftest import SMOKE_CONFIG, write_config

SKIS = ["park twin", "powder ski", "carving ski", "touring ski", "mogul ski", "all-mountain ski"]
ADVICE = [
    "wax it often",
    "mount it centered",
    "size it at chin height",
    "keep the edges sharp",
    "pick a softer flex",
    "go wider underfoot",
]


def synthetic_conversations(count: int, seed: int) -> list[list[dict[str, str]]]:
    rng = random.Random(seed)
    conversations = []
    for _ in range(count):
        index = rng.randrange(len(SKIS))
        conversations.append(
            [
                {"role": "user", "content": f"Any tips for my new {SKIS[index]}?"},
                {"role": "assistant", "content": f"For a {SKIS[index]} you should {ADVICE[index]}."},
            ]
        )
    return conversations


def write_dataset(dataset_dir: Path, tokenizer, train_count: int = 48, eval_count: int = 8) -> None:
    dataset_dir.mkdir(parents=True, exist_ok=True)
    for split, count, seed in (("train", train_count, 1), ("eval", eval_count, 2)):
        records = []
        for number, messages in enumerate(synthetic_conversations(count, seed)):
            example = encode_conversation(tokenizer, messages)
            records.append(
                {
                    "thread_id": number,
                    "title": "t",
                    "messages": messages,
                    "input_ids": example.input_ids,
                    "labels": example.labels,
                }
            )
        write_jsonl(dataset_dir / f"{split}.jsonl", records)
    (dataset_dir / "stats.json").write_text("{}")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from more threads, and on a busy 2-core machine OpenMP's spinning threads
    make each step 10-20 times slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def train_config(tmp_path: Path, tiny_tokenizer, tiny_mistral) -> Config:
    path = write_config(
        tmp_path,
        model={"base": str(tiny_mistral)},
        train={
            "max_steps": 12,
            "micro_batch_size": 4,
            "grad_accum_steps": 2,
            "learning_rate": 1e-2,
            "warmup_steps": 2,
            "eval_every": 6,
            "save_every": 4,
            "keep_checkpoints": 2,
        },
    )
    config = load_config(path)
    write_dataset(config.run_dir / "dataset", tiny_tokenizer)
    return config


def save_tiny_model(family: str, target: Path) -> Path:
    """A tiny random model of a real architecture, saved with the built-in tokenizer the way a hub
    checkpoint is laid out, so it loads through the same from_pretrained path as a real one."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        GemmaConfig,
        LlamaConfig,
        MistralConfig,
        Phi3Config,
        Qwen2Config,
    )

    from forumtune.base_model import resolve_base_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model("builtin:tiny-llama"))
    shape = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "initializer_range": 0.1,
        "tie_word_embeddings": False,
    }
    configs = {
        "mistral": MistralConfig,
        "llama": LlamaConfig,
        "qwen2": Qwen2Config,
        "gemma": GemmaConfig,
        "phi3": Phi3Config,
    }
    if family == "gemma":
        shape["head_dim"] = 8
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(configs[family](**shape)).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def tiny_mistral(tmp_path_factory) -> Path:
    return save_tiny_model("mistral", tmp_path_factory.mktemp("tiny-mistral"))


WRONG_ADVICE = [
    "never wax it",
    "mount it at the tail",
    "size it at knee height",
    "let the edges rust",
    "pick the stiffest flex",
    "go as narrow as you can",
]


def synthetic_pairs(count: int, seed: int) -> list[tuple[list[dict[str, str]], str, str]]:
    """A question, the forum's liked answer and a down-voted one."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        index = rng.randrange(len(SKIS))
        prompt = [{"role": "user", "content": f"Any tips for my new {SKIS[index]}?"}]
        pairs.append(
            (
                prompt,
                f"For a {SKIS[index]} you should {ADVICE[index]}.",
                f"For a {SKIS[index]} you should {WRONG_ADVICE[index]}.",
            )
        )
    return pairs


def write_preferences(dataset_dir: Path, tokenizer, train_count: int = 32, eval_count: int = 8) -> None:
    """dataset/preferences_{train,eval}.jsonl as the build stage writes them."""
    dataset_dir.mkdir(parents=True, exist_ok=True)
    for split, count, seed in (("train", train_count, 3), ("eval", eval_count, 4)):
        rows = []
        for number, (prompt, chosen, rejected) in enumerate(synthetic_pairs(count, seed)):
            good = encode_conversation(tokenizer, [*prompt, {"role": "assistant", "content": chosen}])
            bad = encode_conversation(tokenizer, [*prompt, {"role": "assistant", "content": rejected}])
            rows.append(
                {
                    "thread_id": number,
                    "prompt": prompt,
                    "chosen": chosen,
                    "rejected": rejected,
                    "chosen_input_ids": good.input_ids,
                    "chosen_labels": good.labels,
                    "rejected_input_ids": bad.input_ids,
                    "rejected_labels": bad.labels,
                }
            )
        write_jsonl(dataset_dir / f"preferences_{split}.jsonl", rows)


@pytest.fixture(scope="module")
def mistral_7b_dir(tmp_path_factory):
    """Only config.json: the planner must not need the weights."""
    path = tmp_path_factory.mktemp("mistral-7b")
    MistralConfig(
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
    ).save_pretrained(path)
    return path


def mistral(mistral_7b_dir, *overrides):
    """The planner's Mistral-7B on the smoke config, in bf16 with nothing trained in full."""
    return load_config(
        SMOKE_CONFIG,
        [
            f"model.base={mistral_7b_dir}",
            "model.compute_dtype=bfloat16",
            "lora.modules_to_save=null",
            *overrides,
        ],
    )
