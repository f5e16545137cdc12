"""build.preferences: dataset/preferences_{train,eval}.jsonl from the forum store's votes or from a
preference build.input_file, tokenized and masked as SFT examples are (only the final answer trains)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from forumtune.cleaning import TEMPLATE_TOKENS
from forumtune.config import Config
from forumtune.data.encode import EncodedExample, encode_conversations
from forumtune.data.pairing import answers_from_others, with_system_prompt
from forumtune.data.posts import PostCleaner
from forumtune.data.preference_import import ImportedPreferences, Labelled, read_preferences
from forumtune.data.preferences import PreferencePair, ScoredReply, community_score, pair_replies
from forumtune.forum_store import ForumStore
from forumtune.records import IGNORE_INDEX, LabelledRow, PreferenceRow


def store_pairs(store_path: Path, config: Config, dropped: Counter[str]) -> list[PreferencePair]:
    """Each thread's opening post against its voted replies (cleaned and filtered as SFT answers)."""
    build = config.build
    filtered: Counter[str] = Counter()  # the SFT build counts these already
    cleaner = PostCleaner(build, Counter(), filtered)
    pairs: list[PreferencePair] = []
    with ForumStore(store_path) as store:
        for thread, posts in store.iter_thread_posts():
            question = cleaner.question(thread.title, posts[0]) if posts else None
            if question is None:
                continue
            replies = []
            for reply in answers_from_others(cleaner.replies(posts[1:]), question.author, filtered):
                score = community_score(reply)
                if score is None:
                    dropped["replies_without_votes"] += 1
                    continue
                replies.append(
                    ScoredReply(reply.text, score, reply.author, bool(reply.accepted), reply.position)
                )
            prompt = with_system_prompt([{"role": "user", "content": question.text}], build)
            pairs += pair_replies(
                thread.id,
                prompt,
                replies,
                min_margin=build.preference_min_margin,
                max_pairs=build.preference_pairs_per_question,
                dropped=dropped,
            )
    return pairs


def file_preferences(config: Config, dropped: Counter[str]) -> tuple[list[PreferencePair], list[Labelled]]:
    build = config.build
    assert build.input_file is not None
    imported: ImportedPreferences = read_preferences(build.input_file)
    pairs = [
        PreferencePair(
            p.thread_id,
            without_markup(p.prompt),
            replace(p.chosen, text=strip_markup(p.chosen.text)),
            replace(p.rejected, text=strip_markup(p.rejected.text)),
        )
        for p in imported.pairs
    ]
    labelled = [
        replace(x, prompt=without_markup(x.prompt), completion=strip_markup(x.completion))
        for x in imported.labelled
    ]
    for thread, prompt, replies in imported.scored.values():
        prompt = without_markup(
            with_system_prompt(prompt, build) if prompt[0]["role"] != "system" else prompt
        )
        replies = [replace(r, text=strip_markup(r.text)) for r in replies]
        pairs += pair_replies(
            thread,
            prompt,
            replies,
            min_margin=build.preference_min_margin,
            max_pairs=build.preference_pairs_per_question,
            dropped=dropped,
        )
    return pairs, labelled


def strip_markup(text: str) -> str:
    """Chat-template markup inside a message is removed, as in an imported SFT row (build.file_conversations)."""
    return TEMPLATE_TOKENS.sub(" ", text)


def without_markup(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": strip_markup(m["content"])} for m in messages]


def final_answer_only(example: EncodedExample) -> EncodedExample:
    """Only the last answer trains: earlier assistant turns of a multi-turn prompt are context."""
    start, end = example.answer_spans[-1]
    labels = [IGNORE_INDEX] * start + example.labels[start:end]
    return EncodedExample(example.input_ids[:end], labels, (example.answer_spans[-1],))


def encode_answers(
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[list[dict[str, str]]],
    answers: list[str],
    config: Config,
    dropped: Counter[str],
) -> list[EncodedExample | None]:
    """Each prompt with its answer, tokenized; None where it is longer than build.max_seq_len or the
    answer shorter than build.min_answer_tokens."""
    conversations = [
        [*prompt, {"role": "assistant", "content": answer}] for prompt, answer in zip(prompts, answers)
    ]
    encoded: list[EncodedExample | None] = []
    for example in encode_conversations(tokenizer, conversations, template=None):
        example = final_answer_only(example)
        if len(example.input_ids) > config.build.max_seq_len:
            dropped["longer_than_max_seq_len"] += 1
            encoded.append(None)
        elif example.trained_tokens < config.build.min_answer_tokens:
            dropped["answer_below_min_answer_tokens"] += 1
            encoded.append(None)
        else:
            encoded.append(example)
    return encoded


def pair_rows(
    tokenizer: PreTrainedTokenizerBase, pairs: list[PreferencePair], config: Config, dropped: Counter[str]
) -> list[PreferenceRow]:
    prompts = [p.prompt for p in pairs]
    chosen = encode_answers(tokenizer, prompts, [p.chosen.text for p in pairs], config, dropped)
    rejected = encode_answers(tokenizer, prompts, [p.rejected.text for p in pairs], config, dropped)
    rows = []
    for pair, good, bad in zip(pairs, chosen, rejected):
        if good is None or bad is None:
            continue
        rows.append(
            PreferenceRow(
                thread_id=pair.thread_id,
                prompt=pair.prompt,
                chosen=pair.chosen.text,
                rejected=pair.rejected.text,
                chosen_score=pair.chosen.score,
                rejected_score=pair.rejected.score,
                chosen_input_ids=good.input_ids,
                chosen_labels=good.labels,
                rejected_input_ids=bad.input_ids,
                rejected_labels=bad.labels,
            )
        )
    return rows


def labelled_rows(
    tokenizer: PreTrainedTokenizerBase, labelled: list[Labelled], config: Config, dropped: Counter[str]
) -> list[LabelledRow]:
    encoded = encode_answers(
        tokenizer, [x.prompt for x in labelled], [x.completion for x in labelled], config, dropped
    )
    return [
        LabelledRow(
            thread_id=x.thread_id,
            prompt=x.prompt,
            completion=x.completion,
            label=x.label,
            input_ids=e.input_ids,
            labels=e.labels,
        )
        for x, e in zip(labelled, encoded)
        if e is not None
    ]


def split_rows(
    rows: list[Any], sft_train: set, sft_eval: set, eval_fraction: float, seed: int
) -> dict[str, list[Any]]:
    """Eval pairs come from the threads SFT holds out (so an SFT adapter never trained on them); threads the
    SFT split does not know are split by eval_fraction themselves."""
    unknown = sorted({str(r["thread_id"]) for r in rows} - {str(t) for t in sft_train | sft_eval})
    random.Random(seed).shuffle(unknown)
    held_out = {str(t) for t in sft_eval} | set(unknown[: round(len(unknown) * eval_fraction)])
    return {
        "train": [r for r in rows if str(r["thread_id"]) not in held_out],
        "eval": [r for r in rows if str(r["thread_id"]) in held_out],
    }


def build_preferences(
    config: Config, store_path: Path, tokenizer: PreTrainedTokenizerBase, sft_train: set, sft_eval: set
) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """The preference rows of each split, and their stats (what was paired, and why the rest was not)."""
    dropped: Counter[str] = Counter()
    if config.build.input_file is not None:
        pairs, labelled = file_preferences(config, dropped)
    else:
        pairs, labelled = store_pairs(store_path, config, dropped), []
    rows: list[Any] = pair_rows(tokenizer, pairs, config, dropped) + labelled_rows(
        tokenizer, labelled, config, dropped
    )
    splits = split_rows(rows, sft_train, sft_eval, config.build.eval_fraction, config.seed)
    stats = {
        "pairs": len(pairs),
        "labelled": len(labelled),
        "questions_with_pairs": len({str(p.thread_id) for p in pairs}),
        "train_rows": len(splits["train"]),
        "eval_rows": len(splits["eval"]),
        "dropped": dict(sorted(dropped.items())),
    }
    return splits, stats
