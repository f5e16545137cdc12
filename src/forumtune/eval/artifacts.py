"""Checks on every answer for what goes wrong when a model learns a forum's noise along with its knowledge.

Each detector returns a short piece of evidence (what it matched) or None. They run on the answer as
the model produced it, special tokens included, so a template token the model emitted is seen even
when a chat front end would hide it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from forumtune.records import ModelAnswer

# Forum speaker labels ("User 2:", "Member #14:"), chat role labels at a line start ("Assistant:"),
# and quote headers ("skibum wrote:").
SPEAKER_TAG = re.compile(
    r"\b(?:user|member|guest|poster|anon(?:ymous)?)\s*#?\d+\s*:"
    r"|^[ \t]*(?:user|assistant|human|ai|bot|system|question|answer|q|a)[ \t]*:"
    r"|\b[\w.-]{2,30}[ \t]+(?:wrote|posted)[ \t]*:",
    re.IGNORECASE | re.MULTILINE,
)
FORUM_BOILERPLATE = re.compile(
    r"this post was edited on\b|last edited by\b|\bedited by\s+\w+|\bedited\s+\d+\s+times?\b|^[ \t]*edit(?:ed)?\s*:"
    r"|originally posted by\b|\bquote from\s+\w+|click to expand\b|reply with quote\b|report (?:this )?post\b"
    r"|sent from my\s+\w+|posted (?:on|at)\s+\d|\blikes received\b|\bjoin(?:ed)? date\b"
    r"|\[/?(?:quote|url|img|b|i|u|size|color)(?:=[^\]]*)?\]",
    re.IGNORECASE | re.MULTILINE,
)
TEMPLATE_TOKEN = re.compile(
    r"\[/?INST\]|<</?SYS>>|<\|[a-z_]+\|>|</?s>|<(?:start|end)_of_turn>|^#{2,3}\s*(?:instruction|response|human|assistant)\s*:",
    re.IGNORECASE | re.MULTILINE,
)
WORD = re.compile(r"\w+")
REPEAT_NGRAM = 4  # words per n-gram
REPEAT_MIN_COUNT = 3  # one n-gram this often in one answer is a loop, not style

ARTIFACT_LABELS = {
    "speaker_tag": "speaker tags (User 2:, skibum wrote:)",
    "forum_boilerplate": "forum boilerplate (edit notices, quote headers, BBCode)",
    "template_token": "template tokens in the text ([/INST], <|im_end|>)",
    "hit_token_limit": "hit the token limit instead of ending",
    "repeated_ngram": f"repetition loop: a {REPEAT_NGRAM}-word phrase repeated {REPEAT_MIN_COUNT}+ times",
    "empty": "empty answer",
}

SHORT_LABELS = {
    "speaker_tag": "speaker tag",
    "forum_boilerplate": "boilerplate",
    "template_token": "template token",
    "hit_token_limit": "token limit",
    "repeated_ngram": "repetition",
    "empty": "empty",
}


@dataclass(frozen=True)
class Answer:
    text: str
    ended: bool = True  # False when generation stopped at max_new_tokens instead of at EOS
    tokens: int = 0


def _first_match(pattern: re.Pattern[str], text: str) -> str | None:
    match = pattern.search(text)
    return match.group(0).strip() if match else None


def find_speaker_tag(answer: Answer) -> str | None:
    return _first_match(SPEAKER_TAG, answer.text)


def find_forum_boilerplate(answer: Answer) -> str | None:
    return _first_match(FORUM_BOILERPLATE, answer.text)


def find_template_token(answer: Answer, extra_markers: Iterable[str] = ()) -> str | None:
    found = _first_match(TEMPLATE_TOKEN, answer.text)
    if found:
        return found
    return next((marker for marker in extra_markers if marker and marker in answer.text), None)


def find_token_limit_hit(answer: Answer) -> str | None:
    return None if answer.ended else f"stopped at {answer.tokens} tokens without an end-of-sequence token"


def find_repeated_ngram(answer: Answer) -> str | None:
    words = WORD.findall(answer.text.lower())
    grams = Counter(tuple(words[i : i + REPEAT_NGRAM]) for i in range(len(words) - REPEAT_NGRAM + 1))
    if not grams:
        return None
    gram, count = grams.most_common(1)[0]
    return f"'{' '.join(gram)}' ×{count}" if count >= REPEAT_MIN_COUNT else None


def find_empty(answer: Answer) -> str | None:
    return "no text" if not answer.text.strip() else None


def detectors(special_tokens: Iterable[str] = ()) -> dict[str, Callable[[Answer], str | None]]:
    """Every check by name; `special_tokens` (the tokenizer's own) also count as template tokens."""
    markers = tuple(special_tokens)
    return {
        "speaker_tag": find_speaker_tag,
        "forum_boilerplate": find_forum_boilerplate,
        "template_token": lambda answer: find_template_token(answer, markers),
        "hit_token_limit": find_token_limit_hit,
        "repeated_ngram": find_repeated_ngram,
        "empty": find_empty,
    }


def check_answer(answer: Answer, special_tokens: Iterable[str] = ()) -> dict[str, str]:
    """The artifacts found in one answer: name → evidence."""
    found = {name: detect(answer) for name, detect in detectors(special_tokens).items()}
    return {name: evidence for name, evidence in found.items() if evidence}


def check_model_answer(answer: ModelAnswer, special_tokens: Iterable[str] = ()) -> dict[str, str]:
    """The artifacts in a model's answer as generated (special tokens included)."""
    return check_answer(Answer(answer.raw, answer.ended_with_eos, answer.tokens), special_tokens)


def artifact_counts(flags: list[dict[str, str]]) -> dict[str, int]:
    """How many answers show each artifact, plus `any` (answers with at least one)."""
    counts = {name: sum(name in answer_flags for answer_flags in flags) for name in ARTIFACT_LABELS}
    counts["any"] = sum(bool(answer_flags) for answer_flags in flags)
    return counts
