"""What a training run holds from setup to its last step (`TrainingRun`), and one step's batches and
result: the state train/loop.py hands to the parts it calls (step_log, non_finite, best_adapter)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from forumtune.config import Config
from forumtune.layout import RunLayout
from forumtune.ranks import Ranks
from forumtune.train import host_embeddings
from forumtune.train.checkpoints import TrainerState
from forumtune.train.layer_graphs import LayerGraphs
from forumtune.train.objectives import Objective
from forumtune.train.reporting import Reporter


@dataclass(frozen=True)
class PreparedStep:
    """One optimizer step's micro-batches, ready before the step runs."""

    indices: list[list[int]]  # each micro-batch's rows of dataset/train.jsonl
    host_batches: list[dict[str, torch.Tensor]]  # collated on the host, for token counts
    device_batches: list[dict[str, torch.Tensor]]  # the same, on their way to the device


@dataclass
class TrainingRun:
    config: Config
    layout: RunLayout  # every path of the run dir this training writes into
    device: torch.device
    ranks: Ranks
    tokenizer: PreTrainedTokenizerBase
    model: torch.nn.Module  # the PeftModel, or its DDP wrapper; FSDP2 shards it in place
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    objective: Objective  # train.method: what a micro-batch's loss is
    train_records: list[Any]  # dataset rows (SFT) or preference rows
    eval_records: list[Any]
    total_steps: int
    state: TrainerState
    reporter: Reporter
    graphs: LayerGraphs | None = None
    host_embedding: host_embeddings.HostEmbedding | None = None  # train.embeddings_on_host: the table's rows
    prepared_step: PreparedStep | None = None  # the next step's batches, prepared during this one
    settings: dict[str, Any] = field(default_factory=dict)  # what a checkpoint must share to be resumed


@dataclass(frozen=True)
class StepResult:
    loss: float
    grad_norm: float
    input_tokens: int
    seconds: float
