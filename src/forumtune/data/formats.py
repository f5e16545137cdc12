"""Import and export of common chat dataset shapes, one JSON object per line.

- messages: {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", ...}]}
- sharegpt: {"conversations": [{"from": "human", "value": "..."}, {"from": "gpt", ...}]}
- alpaca:   {"instruction": "...", "input": "...", "output": "..."} (input optional)

Preference rows (data/preference_import.py) are read here too, as the prompt with its preferred answer.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Literal

from forumtune.data.pairing import Conversation
from forumtune.data.preference_import import is_preference_row, sft_messages
from forumtune.errors import BuildError

Format = Literal["messages", "sharegpt", "alpaca"]
Message = dict[str, str]
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "system": "system",
}
SHAREGPT_NAMES = {"user": "human", "assistant": "gpt", "system": "system"}
ROLES = ("system", "user", "assistant")


def detect_format(row: dict[str, Any]) -> Format:
    if isinstance(row.get("messages"), list):
        return "messages"
    if isinstance(row.get("conversations"), list):
        return "sharegpt"
    if "instruction" in row and "output" in row:
        return "alpaca"
    raise ValueError(
        "expected a `messages` list, a ShareGPT `conversations` list, or Alpaca `instruction`/`output` keys"
    )


def row_to_messages(row: dict[str, Any], shape: Format) -> list[Message]:
    if shape == "messages":
        messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in row["messages"]]
    elif shape == "sharegpt":
        messages = []
        for turn in row["conversations"]:
            speaker = str(turn["from"]).lower()
            if speaker not in SHAREGPT_ROLES:
                raise ValueError(f"unknown ShareGPT speaker {turn['from']!r}; expected human, gpt or system")
            messages.append({"role": SHAREGPT_ROLES[speaker], "content": str(turn["value"])})
    else:
        prompt = str(row["instruction"]).strip()
        if str(row.get("input") or "").strip():
            prompt += "\n\n" + str(row["input"]).strip()
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": str(row["output"])}]
        if row.get("system"):
            messages.insert(0, {"role": "system", "content": str(row["system"])})
    check_roles(messages)
    return messages


def check_roles(messages: list[Message]) -> None:
    roles = [m["role"] for m in messages]
    if any(role not in ROLES for role in roles):
        raise ValueError(f"roles must be system, user or assistant, got {sorted(set(roles) - set(ROLES))}")
    turns = roles[1:] if roles[:1] == ["system"] else roles
    alternating = all(a != b for a, b in itertools.pairwise(turns))
    if not turns or turns[0] != "user" or not alternating or turns[-1] != "assistant":
        raise ValueError("turns must alternate user/assistant, starting with user and ending with assistant")


def messages_to_row(messages: list[Message], shape: Format) -> dict[str, Any]:
    if shape == "messages":
        return {"messages": messages}
    if shape == "sharegpt":
        return {
            "conversations": [{"from": SHAREGPT_NAMES[m["role"]], "value": m["content"]} for m in messages]
        }
    system = [m["content"] for m in messages if m["role"] == "system"]
    turns = [m for m in messages if m["role"] != "system"]
    if len(turns) != 2:
        raise BuildError(
            "Alpaca rows hold one question and one answer; export multi_turn data as messages or sharegpt"
        )
    row = {"instruction": turns[0]["content"], "input": "", "output": turns[1]["content"]}
    return {**row, "system": system[0]} if system else row


def read_conversations(path: Path, shape: Format | Literal["auto"] = "auto") -> list[Conversation]:
    """Every row of a JSONL file as a conversation; each row is its own `thread` for the train/eval split."""
    if not path.exists():
        raise BuildError(f"build.input_file {path} does not exist")
    conversations = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if is_preference_row(row):  # SFT learns the preferred answer; the pair goes to preferences
                    messages = sft_messages(row)
                    if messages is None:
                        continue
                    check_roles(messages)
                else:
                    messages = row_to_messages(row, detect_format(row) if shape == "auto" else shape)
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                detail = f"missing key {error}" if isinstance(error, KeyError) else str(error)
                raise BuildError(
                    f"build.input_file {path}, line {number}: {detail} (build.input_format: {shape})"
                ) from None
            thread = str(row.get("thread_id", row.get("id", number)))
            conversations.append(Conversation(thread, str(row.get("title", "")), messages))
    if not conversations:
        raise BuildError(f"build.input_file {path} holds no rows")
    return conversations


def write_rows(path: Path, messages_list: list[list[Message]], shape: Format) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for messages in messages_list:
            handle.write(json.dumps(messages_to_row(messages, shape), ensure_ascii=False) + "\n")
