"""The `build` stage: forum store (or a JSONL file) → cleaned, paired, filtered, templated, tokenized,
masked and optionally packed JSONL splits, with stats of what every step removed."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from transformers import PreTrainedTokenizerBase

from forumtune.atomic import atomic_directory
from forumtune.base_model import load_tokenizer
from forumtune.cleaning import TEMPLATE_TOKENS
from forumtune.config import BuildConfig, Config
from forumtune.data.encode import EncodedExample, encode_conversations
from forumtune.data.filters import drop_duplicates, fit_length
from forumtune.data.formats import read_conversations, write_rows
from forumtune.data.packing import pack_records
from forumtune.data.pairing import Conversation, pair_thread, split_threads
from forumtune.data.posts import PostCleaner
from forumtune.data.preference_build import build_preferences
from forumtune.data.retrieved import with_retrieved_context
from forumtune.data.votes import VoteTally, mean
from forumtune.errors import BuildError
from forumtune.forum_store import ForumStore
from forumtune.layout import SPLITS, DatasetFiles
from forumtune.records import DatasetRow, ExampleRow, write_jsonl

ENCODE_CHUNK = 2048  # conversations tokenized per call: big enough to keep every core busy


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    )


def store_conversations(
    store_path: Path,
    build: BuildConfig,
    counts: Counter[str],
    cleaning: Counter[str],
    filtered: Counter[str],
    votes: VoteTally,
    console: Console,
) -> list[Conversation]:
    if not store_path.exists():
        raise BuildError(
            f"no forum store at {store_path}: run `forumtune scrape` first, or set build.input_file"
        )
    cleaner = PostCleaner(build, cleaning, filtered)
    conversations: list[Conversation] = []
    with ForumStore(store_path) as store, progress_bar(console) as progress:
        task = progress.add_task("clean and pair threads", total=store.thread_count())
        for thread, posts in store.iter_thread_posts():
            counts["threads"] += 1
            counts["posts"] += len(posts)
            for post in posts:
                votes.add_post(post)
            conversations += pair_thread(thread, posts, cleaner, build)
            progress.advance(task)
    return conversations


def file_conversations(
    build: BuildConfig, counts: Counter[str], cleaning: Counter[str]
) -> list[Conversation]:
    """Rows of the user's own file, kept as written except for chat-template markup inside a message."""
    assert build.input_file is not None
    conversations = read_conversations(build.input_file, build.input_format)
    for conversation in conversations:
        for message in conversation.messages:
            message["content"], removed = TEMPLATE_TOKENS.subn(" ", message["content"])
            cleaning["template_tokens"] += removed
    counts["rows"] = len(conversations)
    if build.system_prompt:
        conversations = [
            c
            if c.messages[0]["role"] == "system"
            else Conversation(
                c.thread_id, c.thread_title, [{"role": "system", "content": build.system_prompt}, *c.messages]
            )
            for c in conversations
        ]
    return conversations


def kept_messages(messages: list[dict[str, str]], answers: int) -> list[dict[str, str]]:
    """The messages through the given number of answers (what is left of a conversation cut to fit)."""
    seen = 0
    for index, message in enumerate(messages):
        seen += message["role"] == "assistant"
        if seen == answers:
            return messages[: index + 1]
    return messages


def encode_all(
    tokenizer: PreTrainedTokenizerBase,
    conversations: list[Conversation],
    build: BuildConfig,
    filtered: Counter[str],
    console: Console,
) -> list[tuple[Conversation, EncodedExample]]:
    encoded = []
    with progress_bar(console) as progress:
        task = progress.add_task("template and tokenize", total=len(conversations))
        for start in range(0, len(conversations), ENCODE_CHUNK):
            chunk = conversations[start : start + ENCODE_CHUNK]
            examples = encode_conversations(
                tokenizer, [c.messages for c in chunk], train_on_inputs=build.train_on_inputs
            )
            for conversation, example in zip(chunk, examples):
                fitted = fit_length(
                    example,
                    max_seq_len=build.max_seq_len,
                    min_answer_tokens=build.min_answer_tokens,
                    filtered=filtered,
                )
                if fitted is not None:
                    encoded.append((conversation, fitted))
            progress.advance(task, len(chunk))
    return encoded


def to_record(conversation: Conversation, example: EncodedExample) -> ExampleRow:
    return ExampleRow(
        thread_id=conversation.thread_id,
        title=conversation.thread_title,
        messages=kept_messages(conversation.messages, len(example.answer_spans)),
        input_ids=example.input_ids,
        labels=example.labels,
    )


def token_stats(records: dict[str, list[ExampleRow]]) -> dict[str, int]:
    stats = {}
    for split, rows in records.items():
        stats[f"{split}_tokens"] = sum(len(r["input_ids"]) for r in rows)
        stats[f"{split}_trained_tokens"] = sum(sum(label != -100 for label in r["labels"]) for r in rows)
    return stats


def write_dataset(
    dataset_dir: Path,
    records: dict[str, list[ExampleRow]],
    train_rows: list[DatasetRow],
    stats: dict[str, Any],
    export_formats: list[str],
    preferences: dict[str, list[Any]] | None = None,
) -> None:
    """All files into a staging dir, then one rename: a killed build never leaves half a dataset."""
    with atomic_directory(dataset_dir) as staging:
        files = DatasetFiles(staging)
        write_jsonl(files.train, train_rows)
        write_jsonl(files.eval, records["eval"])
        for split, rows in (preferences or {}).items():
            write_jsonl(files.preferences(split), rows)
        for shape in export_formats:
            for split in SPLITS:
                conversations = [r["messages"] for r in records[split]]
                write_rows(files.exported(split, shape), conversations, shape)  # type: ignore[arg-type]
        files.stats.write_text(json.dumps(stats, indent=2))


def run_build(
    config: Config,
    store_path: Path,
    dataset_dir: Path,
    console: Console,
    index_paths: tuple[Path, Path] | None = None,
) -> dict[str, Any]:
    """index_paths: the search index and its vectors, which `build.pairing: qa_retrieved` reads."""
    build = config.build
    tokenizer = load_tokenizer(config.model.base, build.chat_template)
    counts: Counter[str] = Counter()
    cleaning: Counter[str] = Counter()
    filtered: Counter[str] = Counter()
    votes = VoteTally()
    if build.input_file is not None:
        conversations = file_conversations(build, counts, cleaning)
    else:
        conversations = store_conversations(store_path, build, counts, cleaning, filtered, votes, console)
    counts["conversations"] = len(conversations)
    conversations = drop_duplicates(
        conversations, exact=build.dedup, near_threshold=build.near_duplicate_threshold, filtered=filtered
    )
    split = None
    if build.pairing == "qa_retrieved":  # split first: eval threads must never be retrieved into a prompt
        split = split_threads(sorted({c.thread_id for c in conversations}), build.eval_fraction, config.seed)
        if index_paths is None:
            raise BuildError("build.pairing qa_retrieved needs the search index: run `forumtune index` first")
        conversations = with_retrieved_context(
            conversations, split[1], *index_paths, tokenizer, build.max_seq_len
        )
    encoded = encode_all(tokenizer, conversations, build, filtered, console)
    if not encoded:
        if filtered["no_votes"] and not votes.posts_with_signals():
            raise BuildError(
                "build.pairing is qa_best_voted but no post in the store shows likes, a score or "
                "an accepted mark; pick build.pairing: qa (or a site profile that reads votes)"
            )
        raise BuildError(
            "no usable question/answer pairs: lower build.min_answer_chars or build.min_answer_tokens, "
            "raise build.max_seq_len, or scrape more threads"
        )
    for conversation, example in encoded:
        votes.add_answers(conversation.answer_likes[: len(example.answer_spans)])
    train_ids, eval_ids = split or split_threads(
        sorted({c.thread_id for c, _ in encoded}), build.eval_fraction, config.seed
    )
    records: dict[str, list[ExampleRow]] = {
        split: [to_record(c, e) for c, e in encoded if (c.thread_id in eval_ids) == (split == "eval")]
        for split in SPLITS
    }
    if not records["train"]:
        raise BuildError("every example landed in eval; lower build.eval_fraction")
    train_rows = (
        pack_records(records["train"], build.max_seq_len, config.seed) if build.packing else records["train"]
    )
    preferences, preference_stats = None, None
    if build.preferences:
        preferences, preference_stats = build_preferences(config, store_path, tokenizer, train_ids, eval_ids)
    stats = {
        **counts,
        "train_threads": len(train_ids),
        "eval_threads": len(eval_ids),
        "train_examples": len(records["train"]),
        "eval_examples": len(records["eval"]),
        **({"train_packed_rows": len(train_rows)} if build.packing else {}),
        **token_stats(records),
        **({"votes": votes.stats()} if votes.posts else {}),
        "cleaned": dict(sorted(cleaning.items())),
        "filtered": dict(sorted(filtered.items())),
        **({"preferences": preference_stats} if preference_stats else {}),
    }
    write_dataset(dataset_dir, records, train_rows, stats, build.export_formats, preferences)
    console.print(
        f"built {stats['train_examples']} train / {stats['eval_examples']} eval examples from "
        f"{counts['threads'] or counts['rows']} {'threads' if counts['threads'] else 'rows'} "
        f"({stats['train_tokens']} train tokens); cleaned: {stats['cleaned']}; filtered: {stats['filtered']}"
    )
    if votes.likes or votes.scores or votes.accepted:
        console.print(
            f"votes: {len(votes.likes)} posts with likes (mean {mean(votes.likes)}), {len(votes.scores)} "
            f"with a score, {votes.accepted} accepted; the answers kept average "
            f"{mean(votes.chosen_likes)} likes"
        )
    if preference_stats:
        console.print(
            f"preferences: {preference_stats['train_rows']} train / {preference_stats['eval_rows']} eval "
            f"rows from {preference_stats['questions_with_pairs']} questions; not paired: "
            f"{preference_stats['dropped']}"
        )
    return stats
