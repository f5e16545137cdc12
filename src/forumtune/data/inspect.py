"""`forumtune inspect`: tokenized examples with the tokens that count in the loss in colour."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.text import Text
from transformers import PreTrainedTokenizerBase

from forumtune.data.build import read_jsonl
from forumtune.data.encode import IGNORE_INDEX
from forumtune.errors import BuildError

TRAINED_STYLE = "bold green"
MASKED_STYLE = "grey50"


def colour_tokens(tokenizer: PreTrainedTokenizerBase, input_ids: list[int], labels: list[int]) -> Text:
    """Each token as its own text: masked (prompt) tokens grey, trained (answer) tokens green."""
    text = Text()
    for token_id, label in zip(input_ids, labels):
        piece = tokenizer.decode([token_id])
        text.append(piece, style=TRAINED_STYLE if label != IGNORE_INDEX else MASKED_STYLE)
    return text


def show_examples(tokenizer: PreTrainedTokenizerBase, dataset_dir: Path, console: Console, *, split: str = "train",
                  count: int = 2) -> None:
    path = dataset_dir / f"{split}.jsonl"
    if not path.exists():
        raise BuildError(f"no built dataset at {path}: run `forumtune build` first")
    records = read_jsonl(path)[:count]
    console.print(f"[{MASKED_STYLE}]grey: prompt, masked from the loss (label -100)[/]  "
                  f"[{TRAINED_STYLE}]green: trained tokens[/]")
    for number, record in enumerate(records, 1):
        trained = sum(label != IGNORE_INDEX for label in record["labels"])
        console.rule(f"example {number}: thread {record['thread_id']}, {len(record['input_ids'])} tokens, "
                     f"{trained} trained")
        console.print(colour_tokens(tokenizer, record["input_ids"], record["labels"]))
    stats_path = dataset_dir / "stats.json"
    if stats_path.exists():
        console.rule("dataset stats")
        console.print_json(json.dumps(json.loads(stats_path.read_text())))
