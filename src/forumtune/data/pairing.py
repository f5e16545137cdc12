"""From a thread's cleaned posts to question/answer conversations."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from forumtune.config import BuildConfig
from forumtune.data.clean import clean_post
from forumtune.scrape.store import StoredPost, StoredThread


@dataclass(frozen=True)
class Conversation:
    thread_id: int
    thread_title: str
    messages: list[dict[str, str]]


def pair_opening_post_with_replies(thread: StoredThread, posts: list[StoredPost], config: BuildConfig,
                                   stats: Counter[str]) -> list[Conversation]:
    """`qa` pairing: the opening post (with the thread's title) asks; each good reply answers."""
    if not posts:
        return []
    opening = posts[0]
    question_body = clean_post(opening.text, signature=opening.signature, keep_urls=config.keep_urls, stats=stats)
    question = f"{thread.title}\n\n{question_body}".strip()
    if len(question) < config.min_question_chars:
        stats["dropped_short_question"] += 1
        return []
    conversations: list[Conversation] = []
    for reply in posts[1:]:
        answer = clean_post(reply.text, signature=reply.signature, keep_urls=config.keep_urls, stats=stats)
        if reply.author is not None and reply.author == opening.author:
            stats["dropped_reply_by_asker"] += 1
            continue
        if len(answer) < config.min_answer_chars:
            stats["dropped_short_answer"] += 1
            continue
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        if config.system_prompt:
            messages.insert(0, {"role": "system", "content": config.system_prompt})
        conversations.append(Conversation(thread.id, thread.title, messages))
        if len(conversations) >= config.answers_per_question:
            break
    return conversations


def split_threads(thread_ids: list[int], eval_fraction: float, seed: int) -> tuple[set[int], set[int]]:
    """Train and eval thread ids: no thread in both, the same split for the same seed."""
    shuffled = sorted(thread_ids)
    random.Random(seed).shuffle(shuffled)
    eval_count = round(len(shuffled) * eval_fraction)
    if eval_fraction > 0 and len(shuffled) > 1:
        eval_count = max(1, eval_count)
    return set(shuffled[eval_count:]), set(shuffled[:eval_count])
