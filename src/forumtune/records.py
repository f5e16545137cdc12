"""The records that cross stage boundaries as JSON lines, and reading and writing them.

The build stage writes dataset/train.jsonl and dataset/eval.jsonl (forumtune.layout), one row per
line; training reads both, the eval stage reads eval.jsonl and writes eval/samples.jsonl. These types
are the contract between them: a stage that needs a new field adds it here first. Dataset rows are
TypedDicts over the JSON as read (training turns them straight into tensors); eval samples are
dataclasses with explicit to_json/from_json.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NotRequired, TypedDict

IGNORE_INDEX = -100  # a label that does not count in the loss (prompt tokens, padding)


class Message(TypedDict):
    role: str  # system, user or assistant
    content: str


class TokenizedRow(TypedDict):
    """What training reads: token ids and their labels (IGNORE_INDEX where the loss does not count)."""

    input_ids: list[int]
    labels: list[int]
    position_ids: NotRequired[list[int]]  # packed rows only: restart at 0 where each example starts


class ExampleRow(TokenizedRow):
    """One conversation: every eval row, and every train row unless build.packing is on."""

    thread_id: int | str
    title: str
    messages: list[Message]  # what was tokenized, cut where the tokens were cut to fit max_seq_len


class PackedRow(TokenizedRow):
    """Several examples in one row of at most build.max_seq_len tokens (build.packing)."""

    thread_ids: list[int | str]


DatasetRow = ExampleRow | PackedRow


class PreferenceRow(TypedDict):
    """One pair in dataset/preferences_{train,eval}.jsonl: two answers to the same prompt, the one the
    community preferred first, each tokenized with the prompt and masked as an SFT example is."""

    thread_id: int | str
    prompt: list[Message]  # the conversation up to the answer (system, user turns)
    chosen: str
    rejected: str
    chosen_score: NotRequired[float]  # the community signal that ranked them (build.preferences)
    rejected_score: NotRequired[float]
    chosen_input_ids: list[int]
    chosen_labels: list[int]
    rejected_input_ids: list[int]
    rejected_labels: list[int]


class LabelledRow(TokenizedRow):
    """One answer labelled good or bad, unpaired (KTO): from a pair's two sides or an imported label."""

    thread_id: int | str
    prompt: list[Message]
    completion: str
    label: bool  # True: desirable


@dataclass
class ModelScores:
    """One answer against the forum's answer (forumtune.eval.reference)."""

    token_f1: float
    rouge_l: float
    embedding_similarity: float | None  # None when no sentence-embedding model is installed


@dataclass
class ModelAnswer:
    """One model's answer to one held-out question: generation fills the first four fields, the eval
    stage adds the artifact checks and, for the answers it scores, the scores."""

    text: str  # as shown: special tokens removed, stripped
    raw: str  # as generated, special tokens included (what the artifact checks read)
    ended_with_eos: bool  # False when generation stopped at eval.max_new_tokens
    tokens: int
    flags: dict[str, str] = field(default_factory=dict)  # artifact check name → evidence
    scores: ModelScores | None = None

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> ModelAnswer:
        scores = row.get("scores")
        return cls(
            text=row["text"],
            raw=row["raw"],
            ended_with_eos=row["ended_with_eos"],
            tokens=row["tokens"],
            flags=row.get("flags", {}),
            scores=ModelScores(**scores) if scores else None,
        )


@dataclass
class EvalSample:
    """One held-out question in eval/samples.jsonl: the forum's answer and its artifact flags, then each
    model's answer by name (base, tuned; with eval.greedy_baseline also base_greedy, tuned_greedy)."""

    question: str
    reference: str  # the forum's answer
    reference_flags: dict[str, str]
    answers: dict[str, ModelAnswer] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> EvalSample:
        return cls(
            question=row["question"],
            reference=row["reference"],
            reference_flags=row["reference_flags"],
            answers={name: ModelAnswer.from_json(answer) for name, answer in row["answers"].items()},
        )


def write_jsonl(path: Path, rows: Iterable[Any]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_rows(path: Path) -> list[DatasetRow]:
    """A dataset split written by the build stage."""
    return read_jsonl(path)


def write_eval_samples(path: Path, samples: Iterable[EvalSample]) -> None:
    write_jsonl(path, (sample.to_json() for sample in samples))


def read_eval_samples(path: Path) -> list[EvalSample]:
    """eval/samples.jsonl as the eval stage wrote it."""
    return [EvalSample.from_json(row) for row in read_jsonl(path)]
