"""From a thread's cleaned posts to conversations, by the strategy in build.pairing.

- qa:         the opening post (with the title) asks; each of the first good replies answers it.
- qa_context: as qa, with the replies before the answer in the prompt as context.
- qa_best_voted: the opening post → the one reply readers rated best (accepted, else most votes or
              likes); threads whose replies show no votes are skipped.
- multi_turn: the asker's posts are user turns; for each, the reply that quotes it (else the first
              reply after it) is the assistant turn. Replies quoting someone else are side talk.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from forumtune.config import BuildConfig
from forumtune.data.posts import CleanPost, PostCleaner, normalize
from forumtune.data.votes import best_voted
from forumtune.forum_store import StoredPost, StoredThread

QUOTE_MATCH_CHARS = 60


@dataclass(frozen=True)
class Conversation:
    thread_id: int | str
    thread_title: str
    messages: list[dict[str, str]]
    answer_likes: tuple[int | None, ...] = ()  # the likes of each answer's post, for the build's vote stats

    @property
    def answers(self) -> list[str]:
        return [m["content"] for m in self.messages if m["role"] == "assistant"]


def with_system_prompt(messages: list[dict[str, str]], config: BuildConfig) -> list[dict[str, str]]:
    return ([{"role": "system", "content": config.system_prompt}] if config.system_prompt else []) + messages


def answers_from_others(
    replies: Iterator[CleanPost], asker: str | None, filtered: Counter[str]
) -> Iterator[CleanPost]:
    for reply in replies:
        if asker is not None and reply.author == asker:
            filtered["reply_by_asker"] += 1
            continue
        yield reply


def pair_qa(
    thread: StoredThread,
    question: CleanPost,
    posts: list[StoredPost],
    cleaner: PostCleaner,
    config: BuildConfig,
) -> list[Conversation]:
    conversations = []
    for reply in answers_from_others(cleaner.replies(posts[1:]), question.author, cleaner.filtered):
        messages = [{"role": "user", "content": question.text}, {"role": "assistant", "content": reply.text}]
        conversations.append(
            Conversation(thread.id, thread.title, with_system_prompt(messages, config), (reply.likes,))
        )
        if len(conversations) >= config.answers_per_question:
            break
    return conversations


def pair_best_voted(
    thread: StoredThread,
    question: CleanPost,
    posts: list[StoredPost],
    cleaner: PostCleaner,
    config: BuildConfig,
) -> list[Conversation]:
    """Every reply is cleaned here (not just the first few): the best one may come last."""
    best = best_voted(answers_from_others(cleaner.replies(posts[1:]), question.author, cleaner.filtered))
    if best is None:
        cleaner.filtered["no_votes"] += 1
        return []
    messages = [{"role": "user", "content": question.text}, {"role": "assistant", "content": best.text}]
    return [Conversation(thread.id, thread.title, with_system_prompt(messages, config), (best.likes,))]


def context_prompt(question: str, earlier: list[CleanPost]) -> str:
    if not earlier:
        return question
    replies = "\n\n".join(f"[{number}] {post.text}" for number, post in enumerate(earlier, 1))
    return f"{question}\n\nEarlier replies in this thread:\n\n{replies}"


def pair_qa_with_context(
    thread: StoredThread,
    question: CleanPost,
    posts: list[StoredPost],
    cleaner: PostCleaner,
    config: BuildConfig,
) -> list[Conversation]:
    conversations: list[Conversation] = []
    earlier: list[CleanPost] = []
    for reply in cleaner.replies(posts[1:]):
        if reply.author != question.author or question.author is None:
            context = earlier[-config.context_replies :] if config.context_replies else []
            messages = [
                {"role": "user", "content": context_prompt(question.text, context)},
                {"role": "assistant", "content": reply.text},
            ]
            conversations.append(
                Conversation(thread.id, thread.title, with_system_prompt(messages, config), (reply.likes,))
            )
            if len(conversations) >= config.answers_per_question:
                break
        earlier.append(reply)
    return conversations


def quotes_post(reply: CleanPost, post: CleanPost) -> bool:
    text = normalize(post.text)
    return any(quote[:QUOTE_MATCH_CHARS] in text for quote in reply.quotes if quote)


def answered_turn(reply: CleanPost, user_turns: list[CleanPost], others: list[CleanPost]) -> CleanPost | None:
    """The asker's post this reply answers: the one it quotes, else the latest before it; None for side talk."""
    if reply.quotes:
        for turn in reversed(user_turns):
            if quotes_post(reply, turn):
                return turn
        if any(quotes_post(reply, other) for other in others):
            return None
    return user_turns[-1]


def pair_multi_turn(
    thread: StoredThread,
    question: CleanPost,
    posts: list[StoredPost],
    cleaner: PostCleaner,
    config: BuildConfig,
) -> list[Conversation]:
    user_turns, others = [question], []
    answers: dict[int, CleanPost] = {}
    for reply in cleaner.replies(posts[1:]):
        if question.author is not None and reply.author == question.author:
            user_turns.append(reply)
            continue
        turn = answered_turn(reply, user_turns, others)
        others.append(reply)
        if turn is None:
            cleaner.filtered["side_talk"] += 1
        elif turn.position not in answers or (
            quotes_post(reply, turn) and not quotes_post(answers[turn.position], turn)
        ):
            answers[turn.position] = reply
    messages: list[dict[str, str]] = []
    likes: list[int | None] = []
    pending: list[str] = []
    for turn in user_turns:
        pending.append(turn.text)
        if turn.position in answers:
            messages += [
                {"role": "user", "content": "\n\n".join(pending)},
                {"role": "assistant", "content": answers[turn.position].text},
            ]
            likes.append(answers[turn.position].likes)
            pending = []
    if not messages:
        return []
    return [Conversation(thread.id, thread.title, with_system_prompt(messages, config), tuple(likes))]


Pairing = Callable[[StoredThread, CleanPost, list[StoredPost], PostCleaner, BuildConfig], list[Conversation]]
PAIRINGS: dict[str, Pairing] = {
    "qa": pair_qa,
    "qa_context": pair_qa_with_context,
    "multi_turn": pair_multi_turn,
    "qa_best_voted": pair_best_voted,
    "qa_retrieved": pair_qa,
}  # the passages go in after the split: data/retrieved.py


def pair_thread(
    thread: StoredThread, posts: list[StoredPost], cleaner: PostCleaner, config: BuildConfig
) -> list[Conversation]:
    if not posts:
        return []
    question = cleaner.question(thread.title, posts[0])
    if question is None:
        return []
    return PAIRINGS[config.pairing](thread, question, posts, cleaner, config)


def split_threads(thread_ids: list[int | str], eval_fraction: float, seed: int) -> tuple[set, set]:
    """Train and eval thread ids: no thread in both, the same split for the same seed."""
    shuffled = sorted(thread_ids)
    random.Random(seed).shuffle(shuffled)
    eval_count = round(len(shuffled) * eval_fraction)
    if eval_fraction > 0 and len(shuffled) > 1:
        eval_count = max(1, eval_count)
    return set(shuffled[eval_count:]), set(shuffled[:eval_count])
