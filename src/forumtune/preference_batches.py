"""Preference rows as model batches, and the summed log-probability of each sequence's answer.

Training (the DPO, ORPO and KTO losses) and the eval stage (held-out preference accuracy) both go
through these, so a log-prob measured by either counts the same answer tokens with the same masking.

A pair batch holds the micro-batch's chosen answers in its first half and the rejected ones in its
second, padded to one width: one forward pass scores both.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import torch

from forumtune import cpu_layout
from forumtune.batching import collate
from forumtune.records import IGNORE_INDEX, LabelledRow, PreferenceRow, TokenizedRow


def chosen_row(row: PreferenceRow) -> TokenizedRow:
    return TokenizedRow(input_ids=row["chosen_input_ids"], labels=row["chosen_labels"])


def rejected_row(row: PreferenceRow) -> TokenizedRow:
    return TokenizedRow(input_ids=row["rejected_input_ids"], labels=row["rejected_labels"])


def collate_pairs(
    rows: list[PreferenceRow], pad_id: int, device: torch.device, *, pad_to_multiple: int = 1
) -> dict[str, Any]:
    """2 × len(rows) sequences: every chosen answer, then every rejected one in the same order."""
    sequences = [chosen_row(r) for r in rows] + [rejected_row(r) for r in rows]
    return collate(sequences, pad_id, device, pad_to_multiple=pad_to_multiple)


def prompt_length(row: TokenizedRow) -> int:
    """Tokens before the first trained one: the prompt with its generation prompt."""
    return next(index for index, label in enumerate(row["labels"]) if label != IGNORE_INDEX)


def mismatched(rows: list[LabelledRow]) -> list[TokenizedRow]:
    """Each row's prompt with the previous row's answer (the first takes the last's): KTO's estimate of
    the policy's KL from the reference is measured on answers that do not belong to their prompts
    (Ethayarajh et al. 2024, §4; TRL shifts completions by one the same way). The prompt's tokens followed by
    another answer's tokens are what the template renders, since renderings are prefixes of each other."""
    mixed = []
    for index, row in enumerate(rows):
        other = rows[index - 1]
        start, other_start = prompt_length(row), prompt_length(other)
        answer_ids = other["input_ids"][other_start:]
        mixed.append(
            TokenizedRow(
                input_ids=row["input_ids"][:start] + answer_ids,
                labels=[IGNORE_INDEX] * start + other["labels"][other_start:],
            )
        )
    return mixed


def collate_labelled(
    rows: list[LabelledRow], pad_id: int, device: torch.device, *, pad_to_multiple: int = 1
) -> dict[str, Any]:
    """KTO: the rows, then as many mismatched prompt/answer rows for the KL estimate; `desirable` per row."""
    sequences = [TokenizedRow(input_ids=r["input_ids"], labels=r["labels"]) for r in rows] + mismatched(rows)
    batch = collate(sequences, pad_id, device, pad_to_multiple=pad_to_multiple)
    batch["desirable"] = torch.tensor([bool(r["label"]) for r in rows], device=device)
    return batch


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """The batch as the model takes it: no labels (the loss here is not the model's own)."""
    return {
        key: value for key, value in batch.items() if key in ("input_ids", "attention_mask", "position_ids")
    }


def answer_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sequence: the summed log-probability of its trained tokens (prompt and padding masked), and how
    many there are. Computed in float32 whatever the logits' dtype, so that sums of hundreds of tokens
    keep their precision."""
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    logits = logits[:, :-1].float()
    picked = torch.gather(logits, -1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    token_log_probs = picked - torch.logsumexp(logits, dim=-1)
    return (token_log_probs * mask).sum(-1), mask.sum(-1)


def sequence_log_probs(model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass; the summed answer log-prob of each sequence and its token count."""
    logits = model(**model_inputs(batch), use_cache=False).logits
    return answer_log_probs(logits, batch["labels"])


REFERENCE_METHODS = ("dpo", "kto")  # the preference losses that compare with a reference model
REFERENCE_ADAPTER = (
    "reference"  # a frozen copy of train.init_adapter: the reference when training started from it
)


@contextlib.contextmanager
def reference_weights(model: torch.nn.Module) -> Iterator[None]:
    """The reference model of a preference loss, in the same weights: the frozen starting adapter when
    there is one (training from an SFT adapter: the reference is that SFT model), else the base with the
    adapter switched off. In eval mode (no LoRA dropout) and without gradients."""
    peft_model = model.module if hasattr(model, "module") else model  # DDP wraps it
    cpu_layout.use_trainable_layout(
        peft_model
    )  # eval mode without gradients is where bitsandbytes would pack
    was_training = peft_model.training
    peft_model.eval()
    try:
        with torch.no_grad():
            if REFERENCE_ADAPTER in peft_model.peft_config:
                active = peft_model.active_adapter
                peft_model.set_adapter(REFERENCE_ADAPTER, inference_mode=True)
                try:
                    yield
                finally:
                    peft_model.set_adapter(active)  # trainable again; the reference stays frozen
            else:
                with peft_model.disable_adapter():
                    yield
    finally:
        peft_model.train(was_training)


def labelled_rows(rows: list[PreferenceRow | LabelledRow]) -> list[LabelledRow]:
    """KTO's unpaired examples: each pair's chosen answer as desirable and its rejected one as undesirable
    (an answer in several pairs once, with the label of its first), and labelled rows as they are."""
    labelled: list[LabelledRow] = []
    seen: set[tuple[str, str]] = set()
    for row in rows:
        if "label" in row:
            labelled.append(row)  # type: ignore[arg-type]
            continue
        for side, label in (("chosen", True), ("rejected", False)):
            key = (json.dumps(row["prompt"]), row[side])  # type: ignore[literal-required]
            if key in seen:
                continue
            seen.add(key)
            labelled.append(
                LabelledRow(
                    thread_id=row["thread_id"],
                    prompt=row["prompt"],
                    completion=row[side],  # type: ignore[literal-required]
                    label=label,
                    input_ids=row[f"{side}_input_ids"],  # type: ignore[literal-required]
                    labels=row[f"{side}_labels"],
                )
            )  # type: ignore[literal-required]
    return labelled
