"""Searches of the index on a fixture store equal plain references: BM25 computed here, cosine by numpy,
reciprocal rank fusion by its formula."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from forumtune.config import Config, load_config
from forumtune.index.stage import embedding_text
from forumtune.layout import RunLayout
from forumtune.pipeline import get_stage, run_stage
from forumtune.retrieval.retriever import CANDIDATES, Retriever
from forumtune.retrieval.search_index import NewPassage, Passage, SearchIndex, query_terms
from forumtune.sentence_embedding import SentenceEmbedder
from tests.conftest import write_config
from tests.retrieval.forum import THREADS, every_text, write_ski_forum
from tests.retrieval.reference import (
    anchors,
    bm25_scores,
    cosine_ranking,
    ranked,
    rrf,
    save_tiny_embedding_model,
    tokens,
)

QUESTIONS = [
    "Which wax for cold snow?",
    "my boots hurt my shins",
    "edges on east coast ice",
    "what DIN number for my weight",
    "iron",
    "snow wax boot ski",
]


@dataclass(frozen=True)
class IndexedForum:
    config: Config
    layout: RunLayout
    model_dir: Path


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> IndexedForum:
    root = tmp_path_factory.mktemp("indexed")
    model_dir = save_tiny_embedding_model(root / "tiny-bert", every_text())
    config = load_config(write_config(root, index={"embedding_model": str(model_dir)}))
    layout = RunLayout.of(config)
    write_ski_forum(layout.forum_store)
    run_stage(get_stage("index"), config, Console(quiet=True))
    return IndexedForum(config, layout, model_dir)


def all_passages(layout: RunLayout) -> list[Passage]:
    with SearchIndex(layout.search_index) as index:
        return [p for batch in index.iter_passages() for p in batch]


def rounded(ranking: list[tuple[int, float]]) -> list[tuple[float, int]]:
    """(score, id) in rank order, scores to 9 places: FTS5 sums in another order than the reference."""
    return sorted(((round(score, 9), i) for i, score in ranking), key=lambda item: (-item[0], item[1]))


def test_every_post_long_enough_is_a_passage_with_where_it_came_from(indexed):
    passages = all_passages(indexed.layout)
    assert len(passages) == sum(len(posts) for _, posts in THREADS) - 1, "the 2-character reply is skipped"
    first = passages[0]
    assert (first.title, first.author, first.posted_at) == ("Waxing skis at home", "alice", "2024-01-01")
    assert first.url == "http://forum.test/t/1#p10"
    assert first.text == "What wax do you use for cold snow? I just bought an iron."


@pytest.mark.parametrize("question", QUESTIONS)
def test_bm25_equals_the_reference(indexed, question):
    passages = all_passages(indexed.layout)
    expected = ranked(bm25_scores(passages, query_terms(question)), 5)
    with SearchIndex(indexed.layout.search_index) as index:
        found = [(hit.passage_id, hit.score) for hit in index.bm25(question, 5)]
    assert expected, "every question matches something"
    assert rounded(found) == rounded(expected)


def test_a_question_of_stopwords_alone_finds_nothing(indexed):
    with SearchIndex(indexed.layout.search_index) as index:
        assert index.bm25("what is it that you do", 5) == []
        assert index.bm25('"wax" OR NEAR(', 3), "quotes and operators in a question are plain words"


def reference_vectors(indexed: IndexedForum) -> tuple[SentenceEmbedder, dict[int, np.ndarray]]:
    embedder = SentenceEmbedder(indexed.model_dir, torch.device("cpu"))
    passages = all_passages(indexed.layout)
    vectors = embedder.embed([embedding_text(p.title, p.text) for p in passages]).numpy()
    return embedder, {p.id: vector for p, vector in zip(passages, vectors)}


@pytest.mark.parametrize("question", QUESTIONS)
def test_dense_and_hybrid_equal_cosine_and_rank_fusion(indexed, question):
    embedder, vectors = reference_vectors(indexed)
    query = embedder.embed([question])[0].numpy()
    retriever = Retriever.open(indexed.layout.search_index, indexed.layout.vector_index)
    assert retriever.mode == "hybrid"
    dense = [(hit.passage_id, hit.score) for hit in retriever.ranking(question, 5, mode="dense")]
    expected_dense = cosine_ranking(vectors, query, 5)
    assert [i for i, _ in dense] == [i for i, _ in expected_dense], (dense, expected_dense)
    assert [s for _, s in dense] == pytest.approx([s for _, s in expected_dense], abs=1e-5)

    bm25 = [
        i for i, _ in ranked(bm25_scores(all_passages(indexed.layout), query_terms(question)), CANDIDATES)
    ]
    cosine = [i for i, _ in cosine_ranking(vectors, query, CANDIDATES)]
    hybrid = [(hit.passage_id, hit.score) for hit in retriever.ranking(question, 5, mode="hybrid")]
    assert rounded(hybrid) == rounded(ranked(rrf([bm25, cosine]), 5))
    retriever.close()


def test_search_leaves_out_the_excluded_threads(indexed):
    retriever = Retriever.open(indexed.layout.search_index, indexed.layout.vector_index)
    found = retriever.search("Which wax for cold snow?", 4)
    wax_thread = found[0].passage.thread_id
    assert found[0].passage.title in ("Waxing skis at home", "Which wax for very cold days?")
    others = retriever.search("Which wax for cold snow?", 4, exclude_threads={wax_thread})
    assert len(others) == 4 and all(r.passage.thread_id != wax_thread for r in others)
    retriever.close()


def test_without_an_embedding_model_the_index_is_bm25_alone(tmp_path):
    config = load_config(write_config(tmp_path, index={"embedding_model": None}))
    layout = RunLayout.of(config)
    write_ski_forum(layout.forum_store)
    summary = run_stage(get_stage("index"), config, Console(quiet=True))
    assert summary["vectors"] is False and not layout.vector_index.exists()
    retriever = Retriever.open(layout.search_index, layout.vector_index)
    assert retriever.mode == "bm25" and retriever.search("shins", 2)[0].passage.author in (
        "hank",
        "ivan",
        "kim",
    )


def test_on_a_large_index_the_commonest_words_are_left_out_and_the_rest_ranks_as_the_reference(indexed):
    passages = all_passages(indexed.layout)
    with SearchIndex(indexed.layout.search_index) as index:
        question = "cold wax for Montana"
        assert index.search_terms(question) == query_terms(question), "a small index keeps every word"
        index.prune_from, index.common_share = 0, 0.2  # as if it were large (17 passages: 1 is 6%)
        having = {t: sum(t in tokens(p.title + " " + p.text) for p in passages) for t in ("wax", "montana")}
        assert having["wax"] > 0.2 * len(passages) >= having["montana"]
        terms = index.search_terms(question)
        assert "montana" in terms and "wax" not in terms
        found = [(hit.passage_id, hit.score) for hit in index.bm25(question, 5)]
        index.common_share = 0.0  # every word common: the rarest two stay
        kept = index.search_terms("wax snow iron")
        assert len(kept) == 2 and "wax" not in kept
    assert rounded(found) == rounded(ranked(bm25_scores(passages, terms), 5))


@pytest.mark.parametrize("question", ["Which wax for cold snow?", "snow wax boot ski", "hard wax iron base"])
@pytest.mark.parametrize("budget", [1, 4, 9])
def test_only_passages_with_a_rare_word_are_scored_and_they_rank_by_every_word(indexed, question, budget):
    passages = all_passages(indexed.layout)
    terms = query_terms(question)
    required = anchors(passages, terms, budget)
    assert len(required) < len(terms), "some words are not anchors, or the case tests nothing"
    expected = ranked(bm25_scores(passages, terms, required=required), 5)
    with SearchIndex(indexed.layout.search_index) as index:
        index.anchor_postings = budget
        found = [(hit.passage_id, hit.score) for hit in index.bm25(question, 5)]
        everything = [(hit.passage_id, hit.score) for hit in index.bm25(question, 50)]
    assert expected and rounded(found) == rounded(expected)
    assert len(everything) == len(bm25_scores(passages, terms, required=required))
    anchored_alone = ranked(bm25_scores(passages, required), 50)
    assert rounded(everything) != rounded(anchored_alone), "the other words count in the score"


def test_word_counts_follow_a_reindex_by_another_connection(tmp_path):
    config = load_config(write_config(tmp_path, index={"embedding_model": None}))
    layout = RunLayout.of(config)
    write_ski_forum(layout.forum_store)
    run_stage(get_stage("index"), config, Console(quiet=True))
    with SearchIndex(layout.search_index) as serving, SearchIndex(layout.search_index) as indexing:
        before = serving.documents(["montana"])["montana"]
        assert len(serving.bm25("montana", 5)) == before == 1
        with indexing.db:
            (new_id,) = indexing.add(
                [
                    NewPassage(
                        ("http://forum.test/t/9", 0), "x", 9, "Montana trip", None, None, "u", "Montana again"
                    )
                ]
            )
        assert serving.documents(["montana"])["montana"] == before + 1
        assert serving.count() == indexing.count()
        assert new_id in [hit.passage_id for hit in serving.bm25("montana", 5)]
