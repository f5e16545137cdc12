"""A small built dataset written the way the build stage writes it, so train tests need no scrape."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from forumtune.config import Config, load_config
from forumtune.data.build import write_jsonl
from forumtune.data.encode import encode_conversation
from tests.conftest import write_config

SKIS = ["park twin", "powder ski", "carving ski", "touring ski", "mogul ski", "all-mountain ski"]
ADVICE = ["wax it often", "mount it centered", "size it at chin height", "keep the edges sharp",
          "pick a softer flex", "go wider underfoot"]


def synthetic_conversations(count: int, seed: int) -> list[list[dict[str, str]]]:
    rng = random.Random(seed)
    conversations = []
    for _ in range(count):
        index = rng.randrange(len(SKIS))
        conversations.append([
            {"role": "user", "content": f"Any tips for my new {SKIS[index]}?"},
            {"role": "assistant", "content": f"For a {SKIS[index]} you should {ADVICE[index]}."},
        ])
    return conversations


def write_dataset(dataset_dir: Path, tokenizer, train_count: int = 48, eval_count: int = 8) -> None:
    dataset_dir.mkdir(parents=True, exist_ok=True)
    for split, count, seed in (("train", train_count, 1), ("eval", eval_count, 2)):
        records = []
        for number, messages in enumerate(synthetic_conversations(count, seed)):
            example = encode_conversation(tokenizer, messages)
            records.append({"thread_id": number, "title": "t", "messages": messages,
                            "input_ids": example.input_ids, "labels": example.labels})
        write_jsonl(dataset_dir / f"{split}.jsonl", records)
    (dataset_dir / "stats.json").write_text("{}")


@pytest.fixture
def train_config(tmp_path: Path, tiny_tokenizer) -> Config:
    path = write_config(tmp_path, train={"max_steps": 12, "micro_batch_size": 4, "grad_accum_steps": 2,
                                         "learning_rate": 3e-3, "warmup_steps": 2, "eval_every": 6,
                                         "save_every": 4, "keep_checkpoints": 2})
    config = load_config(path)
    write_dataset(config.run_dir / "dataset", tiny_tokenizer)
    return config
