"""A question → the forum's best passages: BM25, dense vectors, or both fused by reciprocal rank.

Reciprocal rank fusion (Cormack et al., 2009) adds 1 / (RRF_K + rank) over the rankings a passage is
in: it needs no calibration between BM25 scores and cosine similarities, which live on different
scales, and a passage both rankings like comes first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from forumtune.errors import RetrievalError
from forumtune.retrieval.search_index import Hit, Passage, SearchIndex
from forumtune.retrieval.vectors import VectorIndex
from forumtune.sentence_embedding import SentenceEmbedder, is_model_dir

RRF_K = 60  # the constant of the paper: ranks past the first few differ little
CANDIDATES = 50  # how deep each ranking goes before fusion
Mode = Literal["bm25", "dense", "hybrid"]


@dataclass(frozen=True)
class Retrieved:
    passage: Passage
    score: float


def reciprocal_rank_fusion(rankings: list[list[Hit]], k: int = RRF_K) -> list[Hit]:
    """One ranking from several: each passage scores the sum of 1 / (k + its rank) (ties: lower id first)."""
    scores: dict[int, float] = defaultdict(float)
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.passage_id] += 1.0 / (k + rank)
    return sorted(
        (Hit(i, score) for i, score in scores.items()), key=lambda hit: (-hit.score, hit.passage_id)
    )


class Retriever:
    """Searches one index; dense and hybrid search when the index has vectors and its model is here."""

    def __init__(
        self, index: SearchIndex, vectors: VectorIndex | None = None, embedder: SentenceEmbedder | None = None
    ):
        self.index = index
        self.vectors = vectors if embedder is not None else None
        self.embedder = embedder
        # A hybrid search runs BM25 on this thread while it embeds the question: SQLite and torch both
        # let go of the GIL, so on two cores the search takes the longer of the two, not their sum.
        self._lexical = ThreadPoolExecutor(max_workers=1) if self.vectors is not None else None

    @classmethod
    def open(cls, search_index: Path, vector_index: Path, *, device: torch.device | None = None) -> Retriever:
        """The index `forumtune index` wrote, with its vectors when it made them."""
        if not search_index.exists():
            raise RetrievalError(
                f"no search index at {search_index}: run `forumtune index CONFIG` first "
                "(chat.retrieval needs it)"
            )
        index = SearchIndex(search_index)
        model_dir = index.embedding_model()
        if model_dir is None or not vector_index.exists():
            return cls(index)
        if not is_model_dir(Path(model_dir)):
            raise RetrievalError(
                f"the index's vectors were made with the embedding model at {model_dir}, which is "
                "gone: reinstall it, or set index.embedding_model and run `forumtune index` again"
            )
        embedder = SentenceEmbedder(Path(model_dir), device or torch.device("cpu"))
        return cls(index, VectorIndex.open_existing(vector_index), embedder)

    @property
    def mode(self) -> Mode:
        return "hybrid" if self.vectors is not None else "bm25"

    def ranking(self, question: str, k: int, mode: Mode | None = None) -> list[Hit]:
        """The k best passage ids for the question."""
        mode = mode or self.mode
        if mode == "bm25":
            return self.index.bm25(question, k)
        if self.vectors is None or self.embedder is None:
            raise RetrievalError(
                f"{mode} search needs the index's dense vectors: set index.embedding_model and "
                "run `forumtune index` again"
            )
        lexical = None
        if mode == "hybrid" and self._lexical is not None:
            lexical = self._lexical.submit(self.index.bm25, question, max(k, CANDIDATES))
        dense = self.vectors.search(self.embedder.embed([question])[0].numpy(), max(k, CANDIDATES))
        if lexical is None:
            return dense[:k]
        return reciprocal_rank_fusion([lexical.result(), dense])[:k]

    def search(
        self, question: str, k: int, *, mode: Mode | None = None, exclude_threads: Collection[int] = ()
    ) -> list[Retrieved]:
        """The k best passages, none from the excluded threads (the store's thread ids)."""
        depth = k if not exclude_threads else k + CANDIDATES
        hits = self.ranking(question, depth, mode)
        passages = {p.id: p for p in self.index.passages(hit.passage_id for hit in hits)}
        found = [Retrieved(passages[hit.passage_id], hit.score) for hit in hits if hit.passage_id in passages]
        return [r for r in found if r.passage.thread_id not in exclude_threads][:k]

    def close(self) -> None:
        if self._lexical is not None:
            self._lexical.shutdown()
        self.index.close()
