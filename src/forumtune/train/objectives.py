"""What one micro-batch's loss is, by train.method: the loop's only branch on the training objective.

An objective turns the rows it trains on into batches (`collate`), counts what its loss is averaged
over (`count`: trained tokens for SFT, pairs for DPO and ORPO, examples for KTO; summed over the step
and every GPU by the loop), and computes a micro-batch's share of the step's loss (`loss`). The loop
calls these three and knows nothing else about the method.

The reference log-probs of DPO and KTO are computed per micro-batch, under no_grad, just before the
policy's pass: one forward without a backward, about a third of a step's compute (measured in
benchmarks/RESULTS.md). Precomputing them once for the dataset would save that only from the second
epoch on, and would tie the cached figures to one dataset file, one adapter and one padding; per batch
they always match the weights the run is using.

On the fast path the preference methods read no full-vocabulary logits: the answer tokens' last hidden
states go through the output head in chunks (kernels/answer_log_probs.py), in the reference's pass and
the policy's. With build.packing their answers are packed into rows as they are collated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from forumtune import cpu_layout
from forumtune.batching import collate, mean_token_loss, trained_token_count
from forumtune.config import TrainConfig
from forumtune.errors import TrainError
from forumtune.kernels.answer_log_probs import CHUNK_TOKENS, chunked_answer_log_probs
from forumtune.layout import DatasetFiles
from forumtune.preference_batches import (
    collate_labelled,
    collate_pairs,
    labelled_rows,
    reference_weights,
    sequence_log_probs,
)
from forumtune.records import read_jsonl, read_rows
from forumtune.train.preference import dpo_losses, kl_estimate, kto_losses, odds_ratio_losses

Batch = dict[str, Any]


@dataclass(frozen=True)
class Counts:
    """What a loss is averaged over: `items` (tokens, pairs or examples), and for ORPO's NLL term the
    trained tokens of the chosen answers."""

    items: float
    tokens: float


class Objective:
    method = "sft"
    sequences_per_row = 1  # sequences in the forward pass per training row (the memory plan reads it)
    train_file = "train.jsonl"

    def __init__(self, train: TrainConfig, *, fast_path: bool = False, pack_to: int | None = None):
        self.train = train
        # the preference methods' options: the answer tokens' log-probs through the output head in chunks
        # (the fast path's), and their sequences packed into rows of `pack_to` tokens (build.packing); SFT
        # is packed by the build and takes the fast path's loss from liger
        self.answer_head = chunked_answer_log_probs if fast_path else None
        self.pack_to = pack_to

    def fast_path_notes(self, fast: bool) -> list[str]:
        """What of the GPU fast path this objective does without (one line each)."""
        return []

    def collate(self, rows: list[Any], pad_id: int, device: torch.device, pad_to_multiple: int = 1) -> Batch:
        return collate(rows, pad_id, device, pad_to_multiple=pad_to_multiple)

    def count(self, batch: Batch) -> Counts:
        tokens = trained_token_count(batch)
        return Counts(tokens, tokens)

    def loss(self, model: torch.nn.Module, batch: Batch, step: Counts) -> torch.Tensor:
        """This micro-batch's share of the step's loss (the step's losses sum to its mean)."""
        return model(**batch, num_items_in_batch=max(1.0, step.items)).loss

    def eval_loss(
        self, model: torch.nn.Module, rows: list[Any], batch_size: int, pad_id: int, device: torch.device
    ) -> float:
        return mean_token_loss(model, rows, batch_size, pad_id, device)


class PairObjective(Objective):
    """DPO and ORPO: chosen and rejected answers of a micro-batch's pairs in one forward pass."""

    sequences_per_row = 2
    train_file = "preferences_train.jsonl"

    def fast_path_notes(self, fast: bool) -> list[str]:
        if not fast:
            return []
        note = (
            f"train.method={self.method}: the answer tokens' log-probs go through the output head "
            f"{CHUNK_TOKENS} tokens at a time, never as full-vocabulary logits (kernels/answer_log_probs.py; "
            "a head trained through lora.modules_to_save, sharded by FSDP or followed by logit soft-capping "
            "reads the full logits instead), and CUDA graphs are "
            "off (the reference pass runs other weights through the same layers); the rest of the fast path "
            "applies"
        )
        return [note]

    def collate(self, rows: list[Any], pad_id: int, device: torch.device, pad_to_multiple: int = 1) -> Batch:
        return collate_pairs(rows, pad_id, device, pad_to_multiple=pad_to_multiple, pack_to=self.pack_to)

    def count(self, batch: Batch) -> Counts:
        pairs = batch["sequence_tokens"].shape[0] // 2
        return Counts(pairs, int(batch["sequence_tokens"][:pairs].sum()))

    def log_probs(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return sequence_log_probs(model, batch, answer_head=self.answer_head)

    def pair_losses(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, model: torch.nn.Module, batch: Batch, step: Counts) -> torch.Tensor:
        return self.pair_losses(model, batch).sum() / max(1.0, step.items)

    @torch.no_grad()
    def eval_loss(
        self, model: torch.nn.Module, rows: list[Any], batch_size: int, pad_id: int, device: torch.device
    ) -> float:
        """Mean loss per held-out pair (example, for KTO), the adapter in eval mode."""
        cpu_layout.use_trainable_layout(model)
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        for start in range(0, len(rows), batch_size):
            batch = self.collate(rows[start : start + batch_size], pad_id, device)
            counts = self.count(batch)
            total += float(self.loss(model, batch, counts)) * counts.items
            count += int(counts.items)
        model.train(was_training)
        return total / max(count, 1)


class DPO(PairObjective):
    method = "dpo"

    def pair_losses(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        pairs = batch["sequence_tokens"].shape[0] // 2
        with reference_weights(model):
            reference, _ = self.log_probs(model, batch)
        policy, _ = self.log_probs(model, batch)
        return dpo_losses(
            policy[:pairs],
            policy[pairs:],
            reference[:pairs],
            reference[pairs:],
            self.train.beta,
            self.train.dpo_label_smoothing,
        )


class ORPO(PairObjective):
    method = "orpo"

    def loss(self, model: torch.nn.Module, batch: Batch, step: Counts) -> torch.Tensor:
        """NLL per trained token of the step's chosen answers + λ × the mean odds-ratio term per pair."""
        pairs = batch["sequence_tokens"].shape[0] // 2
        sums, tokens = self.log_probs(model, batch)
        means = sums / tokens.clamp(min=1)
        odds_ratio = odds_ratio_losses(means[:pairs], means[pairs:])
        nll = -sums[:pairs].sum() / max(1.0, step.tokens)
        return nll + self.train.orpo_lambda * odds_ratio.sum() / max(1.0, step.items)


class KTO(PairObjective):
    method = "kto"
    sequences_per_row = 1  # the mismatched rows of the KL estimate go through without gradients

    def collate(self, rows: list[Any], pad_id: int, device: torch.device, pad_to_multiple: int = 1) -> Batch:
        return collate_labelled(rows, pad_id, device, pad_to_multiple=pad_to_multiple, pack_to=self.pack_to)

    def count(self, batch: Batch) -> Counts:
        return Counts(batch["desirable"].shape[0], int(batch["sequence_tokens"].sum()))

    def pair_losses(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        mixed = batch["kl"]  # the mismatched rows, collated apart
        with reference_weights(model):
            reference, _ = self.log_probs(model, batch)
            reference_mixed, _ = self.log_probs(model, mixed)
        with torch.no_grad():
            policy_mixed, _ = self.log_probs(model, mixed)
        policy, _ = self.log_probs(model, batch)
        kl = kl_estimate(policy_mixed, reference_mixed)
        return kto_losses(
            policy,
            reference,
            batch["desirable"],
            kl,
            self.train.beta,
            self.train.kto_desirable_weight,
            self.train.kto_undesirable_weight,
        )


OBJECTIVES: dict[str, type[Objective]] = {"sft": Objective, "dpo": DPO, "orpo": ORPO, "kto": KTO}


def objective_for(train: TrainConfig, *, fast_path: bool = False, pack_to: int | None = None) -> Objective:
    """`fast_path`: the run takes the GPU fast path; `pack_to`: build.max_seq_len when build.packing is on."""
    return OBJECTIVES[train.method](train, fast_path=fast_path, pack_to=pack_to)


def training_rows(train: TrainConfig, dataset: DatasetFiles) -> tuple[list[Any], list[Any]]:
    """The train and eval rows the method trains on: dataset/{train,eval}.jsonl for SFT, the preference
    files for the others (KTO: each pair's two answers as a desirable and an undesirable example)."""
    if train.method == "sft":
        if not dataset.train.exists():
            raise TrainError(f"no dataset at {dataset.dir}: run `forumtune build CONFIG` first")
        return read_rows(dataset.train), read_rows(dataset.eval)
    path = dataset.preferences("train")
    if not path.exists():
        raise TrainError(
            f"train.method={train.method} trains on preference pairs, but {path} does not exist: set "
            "build.preferences=true (or give a preference build.input_file) and run `forumtune build`"
        )
    splits = [
        read_jsonl(dataset.preferences(split)) if dataset.preferences(split).exists() else []
        for split in ("train", "eval")
    ]
    if train.method == "kto":
        return labelled_rows(splits[0]), labelled_rows(splits[1])
    if any("label" in row for row in splits[0]):
        raise TrainError(
            f"train.method={train.method} needs chosen/rejected pairs, but {path} holds labelled "
            "single answers (prompt/completion/label rows); use train.method=kto for those"
        )
    return splits[0], splits[1]
