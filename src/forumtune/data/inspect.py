"""`forumtune inspect`: tokenized examples with the tokens that count in the loss in colour, and a
stats page: examples, tokens, a length histogram (PNG), what cleaning and each filter removed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from transformers import PreTrainedTokenizerBase

from forumtune.errors import BuildError
from forumtune.layout import SPLITS, DatasetFiles
from forumtune.records import IGNORE_INDEX, read_jsonl, read_rows

TRAINED_STYLE = "bold green"
MASKED_STYLE = "grey50"
BOUNDARY_STYLE = "bold magenta"


def colour_tokens(
    tokenizer: PreTrainedTokenizerBase,
    input_ids: list[int],
    labels: list[int],
    position_ids: list[int] | None = None,
) -> Text:
    """Each token as its own text: masked (prompt) tokens grey, trained (answer) tokens green; in a
    packed row a marker shows where each example starts."""
    text = Text()
    for index, (token_id, label) in enumerate(zip(input_ids, labels)):
        if position_ids is not None and index > 0 and position_ids[index] == 0:
            text.append(" ║ ", style=BOUNDARY_STYLE)
        text.append(
            tokenizer.decode([token_id]), style=TRAINED_STYLE if label != IGNORE_INDEX else MASKED_STYLE
        )
    return text


def example_title(number: int, record: dict[str, Any]) -> str:
    trained = sum(label != IGNORE_INDEX for label in record["labels"])
    origin = (
        f"{len(record['thread_ids'])} packed examples"
        if "thread_ids" in record
        else f"thread {record['thread_id']}"
    )
    return f"example {number}: {origin}, {len(record['input_ids'])} tokens, {trained} trained"


def plot_length_histogram(lengths: dict[str, list[int]], path: Path, max_seq_len: int | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 3.5))
    for split, values in lengths.items():
        if values:
            axes.hist(values, bins=40, alpha=0.6, label=f"{split} ({len(values)})")
    if max_seq_len:
        axes.axvline(max_seq_len, color="black", linestyle="--", linewidth=1, label="max_seq_len")
    axes.set_xlabel("tokens per example")
    axes.set_ylabel("examples")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def stats_table(stats: dict[str, Any]) -> Table:
    table = Table(title="dataset", show_header=False)
    for key, value in stats.items():
        if isinstance(value, dict):
            detail = ", ".join(f"{name} {count}" for name, count in value.items()) or "nothing"
            table.add_row(escape(key), escape(detail))
        else:
            table.add_row(escape(key), f"{value:,}" if isinstance(value, int) else escape(str(value)))
    return table


def preference_sides(row: dict[str, Any]) -> list[tuple[str, list[int], list[int], float | None]]:
    """(name, input_ids, labels, community score) of each answer of a preference row."""
    if "label" in row:
        return [("desirable" if row["label"] else "undesirable", row["input_ids"], row["labels"], None)]
    return [
        (side, row[f"{side}_input_ids"], row[f"{side}_labels"], row.get(f"{side}_score"))
        for side in ("chosen", "rejected")
    ]


def show_preferences(
    tokenizer: PreTrainedTokenizerBase, files: DatasetFiles, console: Console, *, split: str, count: int
) -> None:
    """The first preference rows of a split: each answer with its prompt masked, as DPO/ORPO/KTO train on it."""
    path = files.preferences(split)
    if not path.exists():
        return
    for number, row in enumerate(read_jsonl(path)[:count], 1):
        console.rule(f"preference {number}: thread {row['thread_id']}")
        for name, ids, labels, score in preference_sides(row):
            trained = sum(label != IGNORE_INDEX for label in labels)
            shown = f", score {score:g}" if score is not None else ""
            console.print(f"[bold]{name}[/bold] ({len(ids)} tokens, {trained} trained{shown})")
            console.print(colour_tokens(tokenizer, ids, labels))


def show_examples(
    tokenizer: PreTrainedTokenizerBase,
    dataset_dir: Path,
    console: Console,
    *,
    split: str = "train",
    count: int = 2,
    max_seq_len: int | None = None,
) -> Path | None:
    """Print `count` examples of a split in colour and the stats page; returns the histogram PNG."""
    files = DatasetFiles(dataset_dir)
    path = files.split(split)
    if not path.exists():
        raise BuildError(f"no built dataset at {path}: run `forumtune build` first")
    records = read_rows(path)
    console.print(
        f"[{MASKED_STYLE}]grey: prompt, masked from the loss (label -100)[/]  "
        f"[{TRAINED_STYLE}]green: trained tokens[/]  [{BOUNDARY_STYLE}]║ packed example boundary[/]"
    )
    for number, record in enumerate(records[:count], 1):
        console.rule(example_title(number, record))
        console.print(
            colour_tokens(tokenizer, record["input_ids"], record["labels"], record.get("position_ids"))
        )
    show_preferences(tokenizer, files, console, split=split, count=1)
    if files.stats.exists():
        console.rule("dataset stats")
        console.print(stats_table(json.loads(files.stats.read_text())))
    lengths = {
        name: [len(r["input_ids"]) for r in read_rows(files.split(name))]
        for name in SPLITS
        if files.split(name).exists()
    }
    histogram = plot_length_histogram(lengths, files.length_histogram, max_seq_len)
    console.print(f"length histogram: {escape(str(histogram))}")
    return histogram
