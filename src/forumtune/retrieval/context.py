"""Passages as the context of a question: numbered, with where they came from, trimmed to a token budget.

Chat puts this into the last user message, and `build.pairing: qa_retrieved` writes training prompts in
the same shape, so a model trained with context reads it at chat time as it learnt it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from forumtune.retrieval.retriever import Retrieved

CONTEXT_INTRO = (
    "Forum posts that may help. Use them only if they answer the question, and cite them as [1], [2]."
)
QUESTION_LABEL = "Question:"
MIN_PARTIAL_TOKENS = 24  # a passage cut shorter than this says too little to be worth its header

CountTokens = Callable[[str], int]


@dataclass(frozen=True)
class Source:
    """A passage as a reply cites it: the `sources` entries of the server's replies (README, Chat and serve)."""

    number: int  # [number] in the prompt and the reply
    title: str
    author: str | None
    date: str | None
    url: str
    text: str  # what the prompt held: the post, cut where the budget ended
    score: float

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def markdown(self) -> str:
        byline = ", ".join(part for part in (self.author, self.date) if part)
        return f"[{self.number}] [{self.title}]({self.url})" + (f" ({byline})" if byline else "")


def source_block(source: Source) -> str:
    """How one passage reads in the prompt: its number, thread title, author and date, then its words."""
    byline = ", ".join(part for part in (source.author, source.date) if part)
    return f"[{source.number}] {source.title}" + (f" ({byline})" if byline else "") + f"\n{source.text}"


def cut_to_tokens(source: Source, budget: int, count: CountTokens) -> Source | None:
    """The source with the longest start of its text (whole words) that fits `budget` tokens, or None."""
    words = source.text.split()
    low, high = 0, len(words)
    while low < high:  # the most words that fit
        middle = (low + high + 1) // 2
        if count(source_block(replace(source, text=" ".join(words[:middle]) + " ..."))) <= budget:
            low = middle
        else:
            high = middle - 1
    return replace(source, text=" ".join(words[:low]) + " ...") if low else None


def fit_to_budget(found: list[Retrieved], budget: int, count: CountTokens) -> list[Source]:
    """Passages in rank order while they fit `budget` tokens; the first that does not is cut to the rest."""
    sources: list[Source] = []
    left = budget
    for result in found:
        p = result.passage
        source: Source | None = Source(
            len(sources) + 1, p.title, p.author, p.posted_at, p.url, p.text, result.score
        )
        assert source is not None
        size = count(source_block(source))
        if size > left:
            source = cut_to_tokens(source, left, count) if left >= MIN_PARTIAL_TOKENS else None
            size = left
        if source is None:
            break
        sources.append(source)
        left -= size
        if left < MIN_PARTIAL_TOKENS:
            break
    return sources


def question_with_context(question: str, sources: list[Source]) -> str:
    """The user message the model sees: the passages, then the question."""
    if not sources:
        return question
    blocks = "\n\n".join(source_block(source) for source in sources)
    return f"{CONTEXT_INTRO}\n\n{blocks}\n\n{QUESTION_LABEL} {question}"


def question_of(message: str) -> str:
    """The question in a user message that question_with_context wrote; any other message is one."""
    if not message.startswith(CONTEXT_INTRO):
        return message
    return message.rsplit(f"\n\n{QUESTION_LABEL} ", 1)[-1]


def markdown_sources(sources: list[Source]) -> str:
    """The sources as markdown links, appended to a reply when a client asks for them in the text."""
    return "\n\nSources:\n" + "\n".join(source.markdown() for source in sources) if sources else ""
