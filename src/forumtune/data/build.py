"""The `build` stage: forum store → cleaned, paired, templated, tokenized and masked JSONL splits."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console

from forumtune.base_model import load_tokenizer
from forumtune.config import Config
from forumtune.data.encode import check_special_tokens, encode_conversation
from forumtune.data.pairing import Conversation, pair_opening_post_with_replies, split_threads
from forumtune.errors import BuildError
from forumtune.scrape.store import ForumStore

SPLITS = ("train", "eval")


def collect_conversations(store_path: Path, config: Config, stats: Counter[str]) -> list[Conversation]:
    if not store_path.exists():
        raise BuildError(f"no forum store at {store_path}: run `forumtune scrape` first")
    conversations: list[Conversation] = []
    with ForumStore(store_path) as store:
        for thread, posts in store.iter_thread_posts():
            stats["threads"] += 1
            stats["posts"] += len(posts)
            conversations += pair_opening_post_with_replies(thread, posts, config.build, stats)
    return conversations


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def run_build(config: Config, store_path: Path, dataset_dir: Path, console: Console) -> dict[str, Any]:
    build = config.build
    tokenizer = load_tokenizer(config.model.base, build.chat_template)
    cleaning: Counter[str] = Counter()
    conversations = collect_conversations(store_path, config, cleaning)
    if not conversations:
        raise BuildError(f"the forum store {store_path} gave no question/answer pairs; lower "
                         "build.min_answer_chars or scrape more threads")
    train_ids, eval_ids = split_threads(sorted({c.thread_id for c in conversations}), build.eval_fraction,
                                        config.seed)
    records: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    tokens: Counter[str] = Counter()
    for conversation in conversations:
        example = encode_conversation(tokenizer, conversation.messages, train_on_inputs=build.train_on_inputs)
        if len(example.input_ids) > build.max_seq_len:
            cleaning["dropped_too_long"] += 1
            continue
        check_special_tokens(tokenizer, example)
        split = "eval" if conversation.thread_id in eval_ids else "train"
        tokens[f"{split}_tokens"] += len(example.input_ids)
        tokens[f"{split}_trained_tokens"] += example.trained_tokens
        records[split].append({"thread_id": conversation.thread_id, "title": conversation.thread_title,
                               "messages": conversation.messages, "input_ids": example.input_ids,
                               "labels": example.labels})
    if not records["train"]:
        raise BuildError("every example was dropped; raise build.max_seq_len or lower build.eval_fraction")
    stats = {
        "threads": cleaning.pop("threads", 0), "posts": cleaning.pop("posts", 0),
        "train_threads": len(train_ids), "eval_threads": len(eval_ids),
        "train_examples": len(records["train"]), "eval_examples": len(records["eval"]),
        **tokens, "removed": dict(sorted(cleaning.items())),
    }
    staging = dataset_dir.with_name(dataset_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for split in SPLITS:
        write_jsonl(staging / f"{split}.jsonl", records[split])
    (staging / "stats.json").write_text(json.dumps(stats, indent=2))
    shutil.rmtree(dataset_dir, ignore_errors=True)
    staging.rename(dataset_dir)
    console.print(f"built {stats['train_examples']} train / {stats['eval_examples']} eval examples from "
                  f"{stats['threads']} threads ({tokens['train_tokens']} train tokens); removed: {stats['removed']}")
    return stats
