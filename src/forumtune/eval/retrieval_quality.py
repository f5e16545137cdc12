"""Retrieval quality on the held-out questions: do the top passages come from a thread that asks the same?

eval.same_questions names a JSON file of thread groups that ask the same question (the demo forum's
generator writes one: members asking again, in their own words, what an earlier thread asked). For each
held-out question whose thread has such a partner, the search index is queried as chat queries it, the
question's own thread left out (a chat user's question has no thread in the forum), and the rank of the
first passage from a partner thread is kept:

- hit@1 and hit@k: the share of questions with a partner's passage first, or within chat.retrieval_top_k;
- MRR: the mean of 1 / that rank, counted as 0 when no partner passage is among the first DEPTH.

BM25 always; dense and hybrid too when the index has vectors and their model is installed. A partner may be
held out itself: chat searches the whole forum, so it counts here (qa_retrieved's training prompts, which
never show an eval thread, are measured by the eval loss instead).
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import torch

from forumtune.config import Config
from forumtune.errors import EvalError
from forumtune.layout import RunLayout
from forumtune.records import DatasetRow
from forumtune.retrieval.context import question_of
from forumtune.retrieval.retriever import Mode, Retriever

DEPTH = 10  # passages ranked per question: MRR counts a partner found deeper as a miss


@dataclass(frozen=True)
class SameQuestionCase:
    """A held-out question and the other threads that ask the same."""

    thread_id: int
    title: str
    question: str
    partners: dict[int, str]  # store thread id → title


@dataclass(frozen=True)
class CaseResult:
    title: str
    question: str
    same_question: list[str]  # the partner threads' titles
    ranks: dict[
        str, int | None
    ]  # search mode → rank of the first partner passage (1 = first), None past DEPTH
    top: dict[str, list[str]]  # search mode → the thread titles of the top-k passages


def url_key(url: str) -> str:
    """How group URLs and the index's thread URLs are matched: by path, since a label file may give paths
    and a forum served locally (the demo) gets another port every run."""
    return urlsplit(url).path.rstrip("/") or "/"


def read_groups(path: Path) -> list[set[str]]:
    """The groups of thread URLs in an eval.same_questions file, as url_key()s."""
    shape = '{"groups": [["/threads/1-a/", "/threads/7-b/"], ...]}'
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvalError(f"eval.same_questions: no file at {path}; fix the path or set it to null") from None
    except json.JSONDecodeError as exc:
        raise EvalError(f"eval.same_questions: {path} is not JSON ({exc}); it should read {shape}") from None
    groups = data.get("groups") if isinstance(data, dict) else None
    if not isinstance(groups, list) or not all(
        isinstance(group, list) and all(isinstance(url, str) for url in group) for group in groups
    ):
        raise EvalError(f"eval.same_questions: {path} should hold a list of thread-URL lists: {shape}")
    return [{url_key(url) for url in group} for group in groups]


def same_question_cases(
    records: list[DatasetRow], threads: dict[int, tuple[str, str]], groups: list[set[str]]
) -> list[SameQuestionCase]:
    """One case per held-out thread that shares its group with another indexed thread.
    threads: the index's threads, store id → (URL, title)."""
    group_of = {key: number for number, group in enumerate(groups) for key in group}
    members: dict[int, dict[int, str]] = defaultdict(dict)
    for thread_id, (url, title) in threads.items():
        if url_key(url) in group_of:
            members[group_of[url_key(url)]][thread_id] = title
    cases: dict[int, SameQuestionCase] = {}
    for record in records:
        thread_id = int(record["thread_id"])
        if thread_id in cases or thread_id not in threads:
            continue
        group = group_of.get(url_key(threads[thread_id][0]))
        partners = {t: title for t, title in members.get(group, {}).items() if t != thread_id}
        if partners:
            message = next(m["content"] for m in record["messages"] if m["role"] == "user")
            cases[thread_id] = SameQuestionCase(thread_id, record["title"], question_of(message), partners)
    return list(cases.values())


def rank_cases(
    retriever: Retriever, cases: list[SameQuestionCase], modes: list[Mode], top_k: int
) -> list[CaseResult]:
    results = []
    for case in cases:
        ranks: dict[str, int | None] = {}
        top: dict[str, list[str]] = {}
        for mode in modes:
            found = retriever.search(case.question, DEPTH, mode=mode, exclude_threads={case.thread_id})
            ranks[mode] = next(
                (rank for rank, r in enumerate(found, start=1) if r.passage.thread_id in case.partners), None
            )
            top[mode] = [r.passage.title for r in found[:top_k]]
        results.append(CaseResult(case.title, case.question, sorted(case.partners.values()), ranks, top))
    return results


def summarize(results: list[CaseResult], modes: list[Mode], top_k: int) -> dict[str, dict[str, float | None]]:
    """hit@1, hit@k and MRR per search mode (None without a single question to ask)."""
    summary: dict[str, dict[str, float | None]] = {}
    for mode in modes:
        ranks = [r.ranks[mode] for r in results]
        summary[mode] = {
            "hit_at_1": _share([rank == 1 for rank in ranks]),
            "hit_at_k": _share([rank is not None and rank <= top_k for rank in ranks]),
            "mrr": statistics.fmean(1 / rank if rank else 0.0 for rank in ranks) if ranks else None,
        }
    return summary


def _share(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def retrieval_quality(
    config: Config, paths: RunLayout, records: list[DatasetRow], device: torch.device
) -> dict[str, Any]:
    """The eval stage's check (where config.checks_retrieval holds) over the held-out records."""
    assert config.eval.same_questions is not None
    groups = read_groups(config.eval.same_questions)
    retriever = Retriever.open(paths.search_index, paths.vector_index, device=device)
    try:
        return check_retrieval(retriever, records, groups, config.chat.retrieval_top_k)
    finally:
        retriever.close()


def check_retrieval(
    retriever: Retriever, records: list[DatasetRow], groups: list[set[str]], top_k: int
) -> dict[str, Any]:
    """hit@1, hit@k and MRR per search mode over the records' questions that another thread asks too,
    and each question's ranks and top passages."""
    modes: list[Mode] = ["bm25", "dense", "hybrid"] if retriever.mode == "hybrid" else ["bm25"]
    cases = same_question_cases(records, retriever.index.threads(), groups)
    results = rank_cases(retriever, cases, modes, top_k)
    return {
        "top_k": top_k,
        "depth": DEPTH,
        "threads": len({r["thread_id"] for r in records}),
        "questions": len(results),
        "modes": summarize(results, modes, top_k),
        "samples": [asdict(result) for result in results],
    }
