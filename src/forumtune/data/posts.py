"""A thread's posts, cleaned one at a time as pairing asks for them, with the per-post filters.

Cleaning is the costly part of a build, and `qa` pairing needs only the first few good replies of a
thread, so posts are cleaned lazily: a thread of 200 posts costs five cleanings, not 200.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from forumtune.cleaning import URLS, CleaningStep, clean_post, cleaning_steps, inline_quotes
from forumtune.config import BuildConfig
from forumtune.errors import BuildError
from forumtune.forum_store import StoredPost

LOW_CONTENT_REPLIES = frozenset(
    {
        "+1",
        "this",
        "this.",
        "this!",
        "this^",
        "^",
        "^^",
        "^this",
        "same",
        "same here",
        "me too",
        "bump",
        "bumping",
        "agreed",
        "agree",
        "thanks",
        "thank you",
        "thx",
        "ty",
        "lol",
        "lmao",
        "haha",
        "nice",
        "cool",
        "yes",
        "no",
        "yep",
        "nope",
        "ok",
        "okay",
        "following",
        "subscribed",
        "following this",
        "interested",
        "what he said",
        "what she said",
        "/thread",
        "thread",
        "+100",
        "10/10",
        "so much this",
        "truth",
        "word",
    }
)
WORD = re.compile(r"[^\W\d_]{2,}")
QUOTE_HEADER = re.compile(r"^\s*\S+ (?:wrote|said|writes|says):\s*", re.IGNORECASE)
SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class CleanPost:
    position: int
    author: str | None
    text: str
    quotes: tuple[str, ...]  # normalized quoted text, to find which earlier post a reply answers
    likes: int | None = None
    score: int | None = None
    accepted: bool | None = None


def normalize(text: str) -> str:
    return SPACES.sub(" ", text).strip().lower()


def quoted_texts(post: StoredPost) -> tuple[str, ...]:
    raw = list(post.quotes) + [body for _, body in inline_quotes(post.text)]
    return tuple(normalize(QUOTE_HEADER.sub("", quote)) for quote in raw if quote.strip())


def is_low_content(raw: str, cleaned: str) -> bool:
    """A reply that says nothing an answer needs: "+1", "this", "bump", or a lone link."""
    if normalize(cleaned).strip(" .!?") in LOW_CONTENT_REPLIES or normalize(cleaned) in LOW_CONTENT_REPLIES:
        return True
    without_links = URLS.sub("", raw)
    return bool(URLS.search(raw)) and len(WORD.findall(without_links)) < 3


@lru_cache(maxsize=1)
def language_identifier():  # type: ignore[no-untyped-def]
    try:
        import py3langid
    except ImportError:
        raise BuildError("build.languages needs the py3langid package: pip install py3langid") from None
    return py3langid


class PostCleaner:
    """Cleans posts with the build's settings and drops those a filter rejects, counting both."""

    def __init__(self, config: BuildConfig, cleaning: Counter[str], filtered: Counter[str]):
        self.config = config
        self.cleaning = cleaning
        self.filtered = filtered
        self.steps: list[CleaningStep] = cleaning_steps(config.urls, config.scrub_contacts)
        self.languages = set(config.languages) if config.languages else None

    def clean(self, post: StoredPost) -> str:
        return clean_post(post.text, signature=post.signature, stats=self.cleaning, steps=self.steps)

    def keep_reply(self, post: StoredPost, text: str) -> bool:
        if self.config.drop_low_content and is_low_content(post.text, text):
            self.filtered["low_content"] += 1
            return False
        if len(text) < self.config.min_answer_chars:
            self.filtered["short_answer"] += 1
            return False
        return self.in_language(text)

    def in_language(self, text: str) -> bool:
        if self.languages is None or len(WORD.findall(text)) < 3:
            return True
        language, _ = language_identifier().classify(text)
        if language not in self.languages:
            self.filtered["other_language"] += 1
            return False
        return True

    def question(self, title: str, opening: StoredPost) -> CleanPost | None:
        body = self.clean(opening)
        text = f"{title}\n\n{body}".strip() if title and not body.startswith(title) else body
        if len(text) < self.config.min_question_chars:
            self.filtered["short_question"] += 1
            return None
        if not self.in_language(text):
            return None
        return CleanPost(opening.position, opening.author, text, ())

    def replies(self, posts: list[StoredPost]) -> Iterator[CleanPost]:
        """The thread's replies that pass the filters, cleaned, in order (lazily)."""
        for post in posts:
            text = self.clean(post)
            if self.keep_reply(post, text):
                yield CleanPost(
                    post.position,
                    post.author,
                    text,
                    quoted_texts(post),
                    post.likes,
                    post.score,
                    post.accepted,
                )
