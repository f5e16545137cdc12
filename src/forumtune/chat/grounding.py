"""Answers grounded in the forum (chat.retrieval): the last question is looked up in the search index and
the best passages go into it, within chat.retrieval_tokens; the reply comes with them as its sources."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from forumtune.chat.engine import Engine, Message
from forumtune.retrieval.context import Source, fit_to_budget, question_with_context
from forumtune.retrieval.retriever import Retriever

CONTEXT_OVERHEAD_TOKENS = 48  # the instruction before the passages and "Question:" after them


@dataclass(frozen=True)
class Grounded:
    messages: list[Message]  # the conversation with the passages in its last user message
    sources: list[Source]


class Grounding:
    def __init__(self, retriever: Retriever, top_k: int, budget_tokens: int):
        self.retriever = retriever
        self.top_k = top_k
        self.budget_tokens = budget_tokens
        self._lock = threading.Lock()  # one SQLite connection and one embedding model, shared by requests

    @property
    def reserved_tokens(self) -> int:
        """Room a question's history must leave for the passages and the words around them."""
        return self.budget_tokens + CONTEXT_OVERHEAD_TOKENS

    def ground(self, engine: Engine, messages: Sequence[Message]) -> Grounded:
        """The messages with the passages for the last user message put into it (the others as they were)."""
        last = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
        if last is None:
            return Grounded(list(messages), [])
        question = messages[last]["content"]
        with self._lock:
            found = self.retriever.search(question, self.top_k)
        sources = fit_to_budget(found, self.budget_tokens, lambda text: len(engine.text_ids(text)))
        grounded = [dict(m) for m in messages]
        grounded[last] = {"role": "user", "content": question_with_context(question, sources)}
        return Grounded(grounded, sources)
