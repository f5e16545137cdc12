"""Preference rows as model batches, and the summed log-probability of each sequence's answer.

Training (the DPO, ORPO and KTO losses) and the eval stage (held-out preference accuracy) both go
through these, so a log-prob measured by either counts the same answer tokens with the same masking.

A pair batch holds the micro-batch's chosen answers, then the rejected ones in the same order: sequence i
and sequence pairs + i are one pair. One forward pass scores both, each sequence in a row of its own
(padded to one width) or, packed (build.packing), several to a row whose position ids restart at 0 for
each, so none sees another (forumtune.data.packing says how transformers reads that): a pair's chosen and
rejected answers may then lie in different rows, and each answer token's log-prob is summed into its
sequence by the index the batch carries (`answer_index`), the same either way.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import torch

from forumtune import cpu_layout
from forumtune.batching import collate
from forumtune.bin_packing import pack_bins
from forumtune.records import IGNORE_INDEX, LabelledRow, PreferenceRow, TokenizedRow

CPU = torch.device("cpu")


def chosen_row(row: PreferenceRow) -> TokenizedRow:
    return TokenizedRow(input_ids=row["chosen_input_ids"], labels=row["chosen_labels"])


def rejected_row(row: PreferenceRow) -> TokenizedRow:
    return TokenizedRow(input_ids=row["rejected_input_ids"], labels=row["rejected_labels"])


def collate_pairs(
    rows: list[PreferenceRow],
    pad_id: int,
    device: torch.device,
    *,
    pad_to_multiple: int = 1,
    pack_to: int | None = None,
) -> dict[str, Any]:
    """2 × len(rows) sequences: every chosen answer, then every rejected one in the same order."""
    sequences = [chosen_row(r) for r in rows] + [rejected_row(r) for r in rows]
    return collate_sequences(sequences, pad_id, device, pad_to_multiple=pad_to_multiple, pack_to=pack_to)


def collate_sequences(
    sequences: list[TokenizedRow],
    pad_id: int,
    device: torch.device,
    *,
    pad_to_multiple: int = 1,
    pack_to: int | None = None,
) -> dict[str, Any]:
    """The sequences one row each (padded), or with `pack_to` several to a row of at most that many tokens
    (`packed_rows`); with where each answer token lies and which sequence it belongs to (`answer_index`)."""
    if pack_to is None:
        batch = collate(sequences, pad_id, CPU, pad_to_multiple=pad_to_multiple)
        owner = torch.arange(len(sequences))[:, None].expand_as(batch["labels"])
    else:
        rows, owners = packed_rows(sequences, pack_to)
        batch = collate(rows, pad_id, CPU, pad_to_multiple=pad_to_multiple)
        batch.pop("use_cache")  # sequence_log_probs passes it; a batch holds tensors only
        owner = torch.full_like(batch["labels"], -1)
        for row, row_owners in enumerate(owners):
            owner[row, : len(row_owners)] = torch.tensor(row_owners)
    batch.update(answer_index(batch["labels"], owner, len(sequences)))
    return {key: value.to(device) for key, value in batch.items()}


def packed_rows(sequences: list[TokenizedRow], capacity: int) -> tuple[list[TokenizedRow], list[list[int]]]:
    """The sequences packed best-fit into rows of at most `capacity` tokens, each a segment whose position
    ids restart at 0 (so transformers keeps attention within it, see forumtune.data.packing), and per row
    the sequence each token belongs to. A segment's first label is masked, as the build's packing does: it
    would be predicted from the segment before (a prompt's first token is never trained anyway)."""
    rows, owners = [], []
    for indices in pack_bins([len(s["input_ids"]) for s in sequences], capacity):
        row = TokenizedRow(input_ids=[], labels=[], position_ids=[])
        row_owners: list[int] = []
        for index in sorted(indices):
            sequence = sequences[index]
            length = len(sequence["input_ids"])
            row["input_ids"] += sequence["input_ids"]
            row["labels"] += [IGNORE_INDEX] + sequence["labels"][1:]
            row["position_ids"] += list(range(length))
            row_owners += [index] * length
        rows.append(row)
        owners.append(row_owners)
    return rows, owners


def answer_index(labels: torch.Tensor, owner: torch.Tensor, sequences: int) -> dict[str, torch.Tensor]:
    """Where the answer tokens are, computed on the host so that the loss needs no wait for the GPU:
    `answer_positions`, the flat index into the batch's [rows × width] positions of each position whose
    logits predict a trained token; `answer_targets`, that token; `answer_sequences`, the sequence it is
    in; `sequence_tokens`, the trained tokens of each sequence (its length is the batch's sequences)."""
    targets = labels[:, 1:]
    rows, columns = (targets != IGNORE_INDEX).nonzero(as_tuple=True)
    owners = owner[rows, columns + 1]
    return {
        "answer_positions": rows * labels.shape[1] + columns,
        "answer_targets": targets[rows, columns],
        "answer_sequences": owners,
        "sequence_tokens": torch.bincount(owners, minlength=sequences),
    }


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
    rows: list[LabelledRow],
    pad_id: int,
    device: torch.device,
    *,
    pad_to_multiple: int = 1,
    pack_to: int | None = None,
) -> dict[str, Any]:
    """KTO: the rows, `desirable` per row, and under `kl` as many mismatched prompt/answer rows for the KL
    estimate, collated apart: they go through the model without gradients."""
    options = {"pad_to_multiple": pad_to_multiple, "pack_to": pack_to}
    sequences = [TokenizedRow(input_ids=r["input_ids"], labels=r["labels"]) for r in rows]
    batch = collate_sequences(sequences, pad_id, device, **options)
    batch["kl"] = collate_sequences(mismatched(rows), pad_id, device, **options)
    batch["desirable"] = torch.tensor([bool(r["label"]) for r in rows], device=device)
    return batch


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """The batch as the model takes it: no labels (the loss here is not the model's own)."""
    return {
        key: value for key, value in batch.items() if key in ("input_ids", "attention_mask", "position_ids")
    }


def full_logit_log_probs(logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
    """log p of each answer token from the model's full logits, in float32 whatever the logits' dtype, so
    that sums of hundreds of tokens keep their precision. The plain reference of the chunked head."""
    picked = logits.flatten(0, 1).index_select(0, batch["answer_positions"]).float()
    return picked.gather(-1, batch["answer_targets"][:, None]).squeeze(-1) - torch.logsumexp(picked, dim=-1)


# What some families' forward does to the logits after the head (Gemma 2-4's tanh soft-capping, Cohere's and
# Granite's scaling): with these the head's output is not the logits, so the log-probs read the full ones.
LOGIT_SOFTCAPS = ("final_logit_softcapping", "logits_soft_cap")
LOGIT_SCALES = ("logit_scale", "logits_scaling")


def plain_output_head(model: torch.nn.Module) -> torch.nn.Linear | None:
    """The model's output head when the answer tokens can go through it alone: a plain Linear (not trained
    in full through lora.modules_to_save, which wraps it) whose weight is whole (not an FSDP shard), in a
    family whose logits are the head's output."""
    peft_model = model.module if hasattr(model, "module") else model  # DDP wraps it
    head = peft_model.get_output_embeddings()
    if type(head) is not torch.nn.Linear or hasattr(head.weight, "full_tensor"):
        return None
    config = peft_model.config
    config = getattr(config, "text_config", None) or config
    if any(getattr(config, name, None) is not None for name in LOGIT_SOFTCAPS):
        return None
    if any(getattr(config, name, None) not in (None, 1, 1.0) for name in LOGIT_SCALES):
        return None
    return head


@contextlib.contextmanager
def head_skipped(head: torch.nn.Module) -> Iterator[None]:
    """The model's forward returns its last hidden states as `logits`: the head passes them through."""
    previous = head.__dict__.get("forward")  # an instance forward some library put there, restored after
    head.forward = lambda hidden: hidden
    try:
        yield
    finally:
        if previous is None:
            del head.forward
        else:
            head.forward = previous


# log p(target) of each row of `hidden` ([answer tokens, hidden size]) under an output head
AnswerHead = Callable[[torch.Tensor, torch.nn.Linear, torch.Tensor], torch.Tensor]


def sequence_log_probs(
    model: torch.nn.Module, batch: dict[str, Any], *, answer_head: AnswerHead | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass; the summed answer log-prob of each sequence (fp32) and its trained token count.
    With `answer_head` (the training fast path gives forumtune.kernels.answer_log_probs'), only the answer
    tokens' last hidden states go through the output head, by that function, where the head allows it
    (`plain_output_head`); else the log-probs come from the model's full logits."""
    inputs = model_inputs(batch)
    head = plain_output_head(model) if answer_head is not None else None
    if head is None:
        token_log_probs = full_logit_log_probs(model(**inputs, use_cache=False).logits, batch)
    else:
        with head_skipped(head):
            hidden = model(**inputs, use_cache=False).logits
        answers = hidden.flatten(0, 1).index_select(0, batch["answer_positions"])
        token_log_probs = answer_head(answers, head, batch["answer_targets"])
    counts = batch["sequence_tokens"]
    sums = torch.zeros(counts.shape[0], dtype=torch.float32, device=counts.device)
    return sums.index_add(0, batch["answer_sequences"], token_log_probs), counts


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
