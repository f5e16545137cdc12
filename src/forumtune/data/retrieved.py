"""`build.pairing: qa_retrieved`: each question gets the forum's passages, as chat.retrieval gives them.

The model learns to read the context and to ignore what does not help. The passages come from other
threads only: never from the answer's own thread (the answer itself would be there to copy) and never
from an eval thread (held-out answers must not leak into training prompts). Eval questions get passages
too, under the same rule, so the eval loss measures answers with context. How many passages and how many
tokens follow chat.retrieval_top_k and chat.retrieval_tokens' defaults: training and chat then fill the
prompt alike (a fixed value, so that changing chat keys never rebuilds the dataset); the passages take at
most half of build.max_seq_len, so that the question and the answer still fit.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from forumtune.config import ChatConfig
from forumtune.data.pairing import Conversation
from forumtune.errors import BuildError
from forumtune.retrieval.context import fit_to_budget, question_with_context
from forumtune.retrieval.retriever import Retriever

TOP_K: int = ChatConfig.model_fields["retrieval_top_k"].default
TOKENS: int = ChatConfig.model_fields["retrieval_tokens"].default


def with_retrieved_context(
    conversations: list[Conversation],
    eval_threads: set,
    index_path: Path,
    vector_path: Path,
    tokenizer: PreTrainedTokenizerBase,
    max_seq_len: int,
) -> list[Conversation]:
    """The conversations with passages from other train threads put into their question."""
    budget = min(TOKENS, max_seq_len // 2)
    if not index_path.exists():
        raise BuildError(
            f"build.pairing qa_retrieved needs the search index at {index_path}: run `forumtune index` first"
        )
    retriever = Retriever.open(index_path, vector_path)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    grounded = []
    try:
        for conversation in conversations:
            messages = [dict(m) for m in conversation.messages]
            first = next(i for i, m in enumerate(messages) if m["role"] == "user")
            question = messages[first]["content"]
            found = retriever.search(question, TOP_K, exclude_threads={conversation.thread_id, *eval_threads})
            messages[first]["content"] = question_with_context(question, fit_to_budget(found, budget, count))
            grounded.append(replace(conversation, messages=messages))
    finally:
        retriever.close()
    return grounded
