"""Retrieval quality on a fixture store: for held-out questions asked again in another thread, the rank of
that thread's first passage (BM25, dense and hybrid) equals a brute-force reference; hit@1, hit@k and MRR
follow from those ranks; the eval stage puts them in metrics.json and report.html."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from selectolax.lexbor import LexborHTMLParser as HTMLParser

from forumtune.base_model import load_tokenizer
from forumtune.config import Config, load_config
from forumtune.data.encode import encode_conversation
from forumtune.errors import EvalError
from forumtune.eval.retrieval_quality import DEPTH, read_groups, retrieval_quality
from forumtune.index.stage import embedding_text
from forumtune.layout import RunLayout
from forumtune.metrics_log import MetricsLog
from forumtune.pipeline import get_stage, run_stage, stale_reason
from forumtune.retrieval.context import Source, question_with_context
from forumtune.retrieval.search_index import Passage, SearchIndex, query_terms
from forumtune.sentence_embedding import SentenceEmbedder
from tests.conftest import write_config
from tests.eval.conftest import save_random_adapter
from tests.retrieval.forum import THREADS, every_text, write_ski_forum
from tests.retrieval.reference import bm25_scores, cosine_ranking, ranked, rrf, save_tiny_embedding_model

# The fixture forum's two wax threads ask the same question; the boots thread's partner is not in the store.
GROUPS = {"groups": [["http://forum.test/t/1", "/t/2/"], ["/t/3", "/t/404"]]}
HELD_OUT = [
    "Waxing skis at home",
    "Which wax for very cold days?",
    "Boots killing my shins",
    "Setting DIN on my own",
]
TOP_K = 2


@dataclass(frozen=True)
class Indexed:
    config: Config
    layout: RunLayout
    records: list[dict]
    ids: dict[str, int]  # thread title → store id


def held_out_records(index_path: Path, tokenizer) -> tuple[list[dict], dict[str, int]]:
    """One record per held-out thread, its opening post as the question; the second wax question comes
    grounded with a passage, as build.pairing qa_retrieved writes it."""
    with SearchIndex(index_path) as index:
        ids = {title: thread_id for thread_id, (_, title) in index.threads().items()}
    records = []
    for title in HELD_OUT:
        question, answer = (text for _, text in dict(THREADS)[title][:2])
        if title == HELD_OUT[1]:
            source = Source(1, "Some thread", "zed", None, "http://forum.test/t/9", "Wax the skis.", 1.0)
            question = question_with_context(question, [source])
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        example = encode_conversation(tokenizer, messages)
        records.append(
            {
                "thread_id": ids[title],
                "title": title,
                "messages": messages,
                "input_ids": example.input_ids,
                "labels": example.labels,
            }
        )
    return records, ids


def make_indexed(root: Path, **sections: dict) -> Indexed:
    labels = root / "same_questions.json"
    root.mkdir(parents=True, exist_ok=True)
    labels.write_text(json.dumps(GROUPS))
    eval_settings = {"same_questions": str(labels), **sections.pop("eval", {})}
    config = load_config(
        write_config(root, chat={"retrieval": True, "retrieval_top_k": TOP_K}, eval=eval_settings, **sections)
    )
    layout = RunLayout.of(config)
    write_ski_forum(layout.forum_store)
    run_stage(get_stage("index"), config, Console(quiet=True))
    records, ids = held_out_records(layout.search_index, load_tokenizer(config.model.base))
    return Indexed(config, layout, records, ids)


@pytest.fixture(scope="module")
def bm25_only(tmp_path_factory) -> Indexed:
    return make_indexed(tmp_path_factory.mktemp("bm25"), index={"embedding_model": None})


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory) -> tuple[Indexed, Path]:
    root = tmp_path_factory.mktemp("hybrid")
    model_dir = save_tiny_embedding_model(root / "tiny-bert", every_text())
    return make_indexed(root / "run", index={"embedding_model": str(model_dir)}), model_dir


def all_passages(layout: RunLayout) -> list[Passage]:
    with SearchIndex(layout.search_index) as index:
        return [p for batch in index.iter_passages() for p in batch]


def plain_question(title: str) -> str:
    return dict(THREADS)[title][0][1]


def first_partner_rank(
    ranking: list[int], passages: dict[int, Passage], own: int, partner: int
) -> int | None:
    """The 1-based rank of the partner thread's first passage once the own thread's are left out."""
    kept = [i for i in ranking if passages[i].thread_id != own][:DEPTH]
    return next((rank for rank, i in enumerate(kept, start=1) if passages[i].thread_id == partner), None)


def bm25_ranking(passages: list[Passage], question: str) -> list[int]:
    return [i for i, _ in ranked(bm25_scores(passages, query_terms(question)), len(passages))]


def expected_scores(ranks: list[int | None]) -> dict[str, float]:
    return {
        "hit_at_1": sum(rank == 1 for rank in ranks) / len(ranks),
        "hit_at_k": sum(rank is not None and rank <= TOP_K for rank in ranks) / len(ranks),
        "mrr": sum(1 / rank for rank in ranks if rank) / len(ranks),
    }


def test_held_out_questions_asked_again_are_ranked_as_bm25_by_hand_ranks_them(bm25_only):
    result = retrieval_quality(bm25_only.config, bm25_only.layout, bm25_only.records, torch.device("cpu"))
    passages = all_passages(bm25_only.layout)
    by_id = {p.id: p for p in passages}
    wax, cold = bm25_only.ids[HELD_OUT[0]], bm25_only.ids[HELD_OUT[1]]
    expected_ranks = [
        first_partner_rank(bm25_ranking(passages, plain_question(HELD_OUT[0])), by_id, wax, cold),
        first_partner_rank(bm25_ranking(passages, plain_question(HELD_OUT[1])), by_id, cold, wax),
    ]
    assert all(expected_ranks), "each wax question finds the other wax thread"
    assert (result["questions"], result["threads"], result["top_k"]) == (2, 4, TOP_K)
    assert [s["title"] for s in result["samples"]] == HELD_OUT[:2], "boots' partner is not in the store"
    assert [s["same_question"] for s in result["samples"]] == [[HELD_OUT[1]], [HELD_OUT[0]]]
    assert [s["ranks"]["bm25"] for s in result["samples"]] == expected_ranks
    assert list(result["modes"]) == ["bm25"]
    assert result["modes"]["bm25"] == pytest.approx(expected_scores(expected_ranks))
    assert result["samples"][1]["question"] == plain_question(HELD_OUT[1]), "searched without its passages"
    first_top = [
        by_id[i].title
        for i in bm25_ranking(passages, plain_question(HELD_OUT[0]))
        if by_id[i].thread_id != wax
    ]
    assert result["samples"][0]["top"]["bm25"] == first_top[:TOP_K]


def test_dense_and_hybrid_ranks_equal_cosine_and_rank_fusion_by_hand(hybrid):
    indexed, model_dir = hybrid
    result = retrieval_quality(indexed.config, indexed.layout, indexed.records, torch.device("cpu"))
    passages = all_passages(indexed.layout)
    by_id = {p.id: p for p in passages}
    embedder = SentenceEmbedder(model_dir, torch.device("cpu"))
    vectors = embedder.embed([embedding_text(p.title, p.text) for p in passages]).numpy()
    by_vector = {p.id: vector for p, vector in zip(passages, vectors)}
    assert list(result["modes"]) == ["bm25", "dense", "hybrid"]
    for sample, (own, partner) in zip(result["samples"], [HELD_OUT[:2], HELD_OUT[1::-1]]):
        own_id, partner_id = indexed.ids[own], indexed.ids[partner]
        query: np.ndarray = embedder.embed([plain_question(own)])[0].numpy()
        dense = [i for i, _ in cosine_ranking(by_vector, query, len(passages))]
        bm25 = bm25_ranking(passages, plain_question(own))
        fused = [i for i, _ in ranked(rrf([bm25, dense]), len(passages))]
        assert sample["ranks"] == {
            "bm25": first_partner_rank(bm25, by_id, own_id, partner_id),
            "dense": first_partner_rank(dense, by_id, own_id, partner_id),
            "hybrid": first_partner_rank(fused, by_id, own_id, partner_id),
        }


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (None, "no file at"),
        ("{not json", "is not JSON"),
        ('{"groups": [["/t/1", 7]]}', "list of thread-URL lists"),
    ],
)
def test_a_bad_label_file_names_the_key(tmp_path, text, problem):
    path = tmp_path / "labels.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(EvalError, match=f"eval.same_questions: .*{problem}"):
        read_groups(path)


def test_the_eval_stage_reports_retrieval_quality(tmp_path):
    """A run with chat.retrieval on: metrics.json and report.html carry the check, one row per search mode."""
    indexed = make_indexed(
        tmp_path,
        model={"load_in_4bit": False},
        index={"embedding_model": None},
        eval={
            "num_samples": 2,
            "max_new_tokens": 3,
            "batch_size": 2,
            "checkpoints": False,
            "embedding_model": None,
        },
    )
    run_dir = indexed.layout.root
    (run_dir / "dataset").mkdir()
    (run_dir / "dataset" / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in indexed.records))
    (run_dir / "dataset" / "stats.json").write_text(json.dumps({"eval_examples": len(indexed.records)}))
    MetricsLog(run_dir / "metrics.csv").write(step=1, split="train", loss=8.0, tokens=100, tokens_per_s=10.0)
    (run_dir / "train_summary.json").write_text(
        json.dumps({"steps": 1, "seconds": 1.0, "peak_memory_mib": 0})
    )
    save_random_adapter(run_dir / "adapter", seed=3)
    run_stage(get_stage("eval"), indexed.config, Console(quiet=True))
    reported = json.loads(indexed.layout.eval_metrics.read_text())["retrieval"]
    direct = retrieval_quality(indexed.config, indexed.layout, indexed.records, torch.device("cpu"))
    assert reported == direct and reported["questions"] == 2
    page = HTMLParser((run_dir / "report.html").read_text())
    row = page.css_first('#retrieval tr[data-mode="bm25"]')
    assert [float(cell.attributes["data-value"]) for cell in row.css("td")] == pytest.approx(
        [direct["modes"]["bm25"][key] for key in ("hit_at_1", "hit_at_k", "mrr")]
    )
    questions = page.css("#retrieval-questions tr")[1:]
    assert [tr.css("td")[0].text() for tr in questions] == HELD_OUT[:2]
    stage = get_stage("eval")
    assert stale_reason(stage, indexed.config, run_dir) is None
    later = indexed.layout.eval_metrics.stat().st_mtime + 10
    os.utime(indexed.layout.search_index, (later, later))
    assert stale_reason(stage, indexed.config, run_dir) == "its inputs are newer than its outputs", (
        "an updated index reruns the check"
    )
