"""Preference JSONL in the shapes other tools write, one object per line:

- pairs:    {"prompt": ..., "chosen": ..., "rejected": ...}: the prompt as text or messages, each answer as
            text or messages (TRL's conversational shape: [{"role": "assistant", ...}]); without a prompt,
            chosen and rejected are whole conversations and the prompt is the turns they share;
- labelled: {"prompt": ..., "completion": ..., "label": true|false} (KTO's unpaired shape);
- scored:   {"messages": [..., {"role": "assistant", ...}], "score": 12, "author": "..."}: one reply and its
            community score; replies to the same prompt (or `thread_id`) are paired by
            forumtune.data.preferences, like a scraped forum's.

Any row may carry `thread_id` (or `id`), which keeps a question's rows on one side of the train/eval split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forumtune.data.preferences import PreferencePair, ScoredReply
from forumtune.errors import BuildError

Message = dict[str, str]


@dataclass(frozen=True)
class Labelled:
    thread_id: int | str
    prompt: list[Message]
    completion: str
    label: bool


@dataclass
class ImportedPreferences:
    pairs: list[PreferencePair] = field(default_factory=list)
    labelled: list[Labelled] = field(default_factory=list)
    scored: dict[str, tuple[str, list[Message], list[ScoredReply]]] = field(default_factory=dict)


def is_preference_row(row: dict[str, Any]) -> bool:
    return ("chosen" in row and "rejected" in row) or ("completion" in row and "label" in row)


def as_messages(value: Any, role: str) -> list[Message]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in value]
    raise ValueError(f"expected text or a list of {{role, content}} messages, got {type(value).__name__}")


def final_answer(value: Any) -> str:
    messages = as_messages(value, "assistant")
    if messages[-1]["role"] != "assistant":
        raise ValueError("an answer given as messages must end with an assistant message")
    return messages[-1]["content"]


def pair_prompt(row: dict[str, Any]) -> list[Message]:
    """The prompt as messages; without one, the turns that chosen and rejected share (TRL's implicit prompt)."""
    if "prompt" in row:
        prompt = as_messages(row["prompt"], "user")
    else:
        chosen, rejected = as_messages(row["chosen"], "assistant"), as_messages(row["rejected"], "assistant")
        shared = 0
        while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
            shared += 1
        prompt = chosen[:shared]
    if row.get("system") and (not prompt or prompt[0]["role"] != "system"):
        prompt = [{"role": "system", "content": str(row["system"])}, *prompt]
    if not prompt or prompt[-1]["role"] != "user":
        raise ValueError("the prompt must end with a user turn")
    return prompt


def sft_messages(row: dict[str, Any]) -> list[Message] | None:
    """A preference row as an SFT example: the prompt with its preferred answer; None for a bad label."""
    if "chosen" in row:
        return [*pair_prompt(row), {"role": "assistant", "content": final_answer(row["chosen"])}]
    if not row["label"]:
        return None
    return [*pair_prompt(row), {"role": "assistant", "content": final_answer(row["completion"])}]


def add_row(imported: ImportedPreferences, row: dict[str, Any], number: int) -> None:
    thread = str(row.get("thread_id", row.get("id", number)))
    if "chosen" in row:
        prompt = pair_prompt(row)
        imported.pairs.append(
            PreferencePair(
                thread,
                prompt,
                ScoredReply(final_answer(row["chosen"]), 1.0),
                ScoredReply(final_answer(row["rejected"]), 0.0),
            )
        )
    elif "label" in row:
        imported.labelled.append(
            Labelled(thread, pair_prompt(row), final_answer(row["completion"]), bool(row["label"]))
        )
    elif "score" in row and isinstance(row.get("messages"), list):
        messages = as_messages(row["messages"], "user")
        if len(messages) < 2 or messages[-1]["role"] != "assistant":
            raise ValueError("a scored row's messages must end with the assistant's reply")
        prompt = messages[:-1]
        key = str(row["thread_id"]) if "thread_id" in row else json.dumps(prompt)
        group = imported.scored.setdefault(key, (thread, prompt, []))
        group[2].append(
            ScoredReply(
                messages[-1]["content"],
                float(row["score"]),
                row.get("author"),
                bool(row.get("accepted", False)),
                len(group[2]),
            )
        )


def read_preferences(path: Path) -> ImportedPreferences:
    """Every preference row of build.input_file (other rows are SFT rows and are left to formats.py)."""
    imported = ImportedPreferences()
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                add_row(imported, json.loads(line), number)
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                detail = f"missing key {error}" if isinstance(error, KeyError) else str(error)
                raise BuildError(
                    f"build.input_file {path}, line {number}: {detail} (a preference row holds "
                    "prompt/chosen/rejected, prompt/completion/label, or messages with a score)"
                ) from None
    return imported
