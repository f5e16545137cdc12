"""Plain references the search index is tested against: BM25 as FTS5 defines it, cosine by numpy,
reciprocal rank fusion by its formula, and a tiny random sentence-embedding model."""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

from forumtune.retrieval.search_index import Passage

TOKEN = re.compile(r"[^\W_]+")


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


def anchors(passages: list[Passage], terms: list[str], budget: int) -> list[str]:
    """The rarest terms, by how many passages hold each, while those counts add up to at most `budget`
    (the rarest always; equal counts: the earlier term in the question first)."""
    having = {t: sum(t in tokens(p.title + " " + p.text) for p in passages) for t in terms}
    chosen: list[str] = []
    for term in sorted(terms, key=lambda t: (having[t], terms.index(t))):
        if chosen and sum(having[t] for t in chosen) + having[term] > budget:
            break
        chosen.append(term)
    return chosen


def bm25_scores(
    passages: list[Passage],
    terms: list[str],
    k1: float = 1.2,
    b: float = 0.75,
    required: list[str] | None = None,
) -> dict[int, float]:
    """FTS5's bm25() (sqlite.org/fts5.html#the_bm25_function), as a positive score per matching passage:
    a term's frequency counts in title and body alike, a document's length is its tokens in both, and
    an idf at or below zero becomes 1e-6. With `required`, only the passages holding one of those terms
    are scored (by all the terms; idf and average length still over every passage)."""
    documents = {p.id: Counter(tokens(p.title) + tokens(p.text)) for p in passages}
    lengths = {i: sum(counts.values()) for i, counts in documents.items()}
    average = sum(lengths.values()) / len(documents)
    scores: dict[int, float] = {}
    for term in terms:
        having = [i for i, counts in documents.items() if counts[term]]
        idf = math.log((len(documents) - len(having) + 0.5) / (len(having) + 0.5))
        idf = idf if idf > 0 else 1e-6
        for i in having:
            f = documents[i][term]
            scores[i] = scores.get(i, 0.0) + idf * f * (k1 + 1) / (
                f + k1 * (1 - b + b * lengths[i] / average)
            )
    if required is not None:
        return {i: s for i, s in scores.items() if any(documents[i][t] for t in required)}
    return scores


def ranked(scores: dict[int, float], k: int) -> list[tuple[int, float]]:
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]


def cosine_ranking(vectors: dict[int, np.ndarray], query: np.ndarray, k: int) -> list[tuple[int, float]]:
    scores = {i: float(v @ query / (np.linalg.norm(v) * np.linalg.norm(query))) for i, v in vectors.items()}
    return ranked(scores, k)


def rrf(rankings: list[list[int]], k: int = 60) -> dict[int, float]:
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, passage_id in enumerate(ranking, start=1):
            scores[passage_id] = scores.get(passage_id, 0.0) + 1 / (k + rank)
    return scores


def save_tiny_embedding_model(out_dir: Path, texts: list[str]) -> Path:
    """A one-layer random BERT whose vocabulary is the words of `texts`: real tokenizer, real pooling."""
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *sorted({t for text in texts for t in tokens(text)}),
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)}).save_pretrained(out_dir)
    torch.manual_seed(0)
    BertModel(
        BertConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
        )
    ).save_pretrained(out_dir)
    return out_dir
