"""Embedding similarity to the forum's answer, with a local sentence-embedding model when one is there.

Nothing is downloaded. `eval.embedding_model: auto` uses the all-MiniLM-L6-v2 weights of the optional
`embeddings` extra; a path uses that local model dir (forumtune.sentence_embedding loads either).
"""

from __future__ import annotations

from pathlib import Path

from forumtune.errors import EvalError
from forumtune.sentence_embedding import SentenceEmbedder, resolve_model_setting

__all__ = ["SentenceEmbedder", "embedding_similarities", "find_embedding_model"]


def find_embedding_model(setting: str | None) -> Path | None:
    """The model dir to use, or None when the similarity is off or no local model is installed."""
    try:
        return resolve_model_setting(setting, "eval.embedding_model", "to skip embedding similarity")
    except ValueError as exc:
        raise EvalError(str(exc)) from None


def embedding_similarities(
    embedder: SentenceEmbedder, candidates: list[str], references: list[str]
) -> list[float]:
    """Cosine similarity of each candidate with its reference."""
    if not candidates:
        return []
    pairs = embedder.embed(candidates) * embedder.embed(references)
    return [float(value) for value in pairs.sum(dim=-1)]
