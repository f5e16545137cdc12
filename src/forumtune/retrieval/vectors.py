"""The passages' dense vectors in a usearch HNSW index, keyed by passage id, saved beside the search index.

usearch was picked by measurement against FAISS's HNSW and an exact scan (what sqlite-vec does)
(benchmarks/retrieval.py, figures in benchmarks/RESULTS.md): both HNSW stores answer in milliseconds
where an exact scan grows with the index (16 ms at 100k vectors on two cores); at their default build
effort usearch's graph finds more of the true neighbours (recall@10 0.77 against FAISS's 0.48 at 100k),
and unlike FAISS's HNSW it removes vectors by key, which the incremental update needs. The file is derived data: `matches(ids)` says whether it holds exactly the
index's passages, and the index stage rebuilds it when it does not (say a run was killed between the
two files' writes).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from forumtune.errors import RetrievalError
from forumtune.retrieval.search_index import Hit

# The HNSW graph's links per node and search breadth: 32 links lift recall@10 on clustered 384-dim vectors
# from 0.82 to 0.92 for 15% more build time (benchmarks/retrieval.py, RESULTS.md).
CONNECTIVITY = 32
EXPANSION_SEARCH = 128


def _usearch():  # type: ignore[no-untyped-def]
    try:
        from usearch.index import Index
    except ImportError:
        raise RetrievalError(
            "dense vectors need the usearch package: pip install 'forumtune[embeddings]', or set "
            "index.embedding_model: null for BM25 alone"
        ) from None
    return Index


class VectorIndex:
    def __init__(self, path: Path, dimensions: int):
        self.path = Path(path)
        index_type = _usearch()
        self.index = index_type(
            ndim=dimensions,
            metric="cos",
            dtype="f32",
            connectivity=CONNECTIVITY,
            expansion_search=EXPANSION_SEARCH,
        )
        if self.path.exists():
            self.index.load(str(self.path))
            if self.index.ndim != dimensions:
                raise RetrievalError(
                    f"{self.path} holds {self.index.ndim}-dimensional vectors, the embedding model "
                    f"makes {dimensions}: run `forumtune index` again to rebuild it"
                )
            self.index.expansion_search = EXPANSION_SEARCH

    @classmethod
    def open_existing(cls, path: Path) -> VectorIndex:
        """The saved index, whatever its dimensions (for searching)."""
        index = _usearch().restore(str(path))
        if index is None:
            raise RetrievalError(f"{path} is not a vector index: run `forumtune index` again to rebuild it")
        vectors = cls.__new__(cls)
        vectors.path, vectors.index = Path(path), index
        index.expansion_search = EXPANSION_SEARCH
        return vectors

    def __len__(self) -> int:
        return len(self.index)

    def matches(self, ids: list[int]) -> bool:
        """Whether it holds a vector for each of these ids and for nothing else."""
        if len(self.index) != len(ids):
            return False
        return not ids or bool(np.all(self.index.contains(np.asarray(ids, dtype=np.uint64))))

    def clear(self) -> None:
        self.index.clear()

    def add(self, ids: list[int], vectors: np.ndarray) -> None:
        if ids:
            self.index.add(np.asarray(ids, dtype=np.uint64), np.ascontiguousarray(vectors, dtype=np.float32))

    def remove(self, ids: list[int]) -> None:
        present = [i for i in ids if self.index.contains(i)]
        if present:
            self.index.remove(np.asarray(present, dtype=np.uint64))

    def save(self) -> None:
        """Written beside its target and renamed over it: a killed save leaves the old file."""
        staging = self.path.with_name(self.path.name + ".partial")
        self.index.save(str(staging))
        os.replace(staging, self.path)

    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        """The k nearest passages by cosine similarity (score: the similarity)."""
        if len(self.index) == 0:
            return []
        # one thread: a single query gains nothing from more, and waits for busy cores when they are shared
        found = self.index.search(np.asarray(vector, dtype=np.float32), min(k, len(self.index)), threads=1)
        return [Hit(int(key), 1.0 - float(distance)) for key, distance in zip(found.keys, found.distances)]
