"""Packed preference batches (build.packing): several chosen and rejected answers share a row, none seeing
another, and DPO, ORPO and KTO give the losses and LoRA gradients they give with one padded row per
answer, and the papers' formulas (tests/train/test_preference.py), under sdpa and eager attention."""

from __future__ import annotations

import pytest
import torch

from forumtune.config import TrainConfig
from forumtune.preference_batches import collate_pairs
from forumtune.records import IGNORE_INDEX
from forumtune.train.objectives import objective_for
from tests.train.test_preference import (
    PAD,
    make_labelled,
    make_pairs,
    reference_dpo,
    reference_kto,
    reference_orpo,
    step_loss,
    tiny_llama,
    with_random_lora,
)

CPU = torch.device("cpu")
PACK_TO = 24  # the answers of make_pairs are 3 to 16 tokens long: about two to a row

METHODS = {
    "dpo": (
        TrainConfig(method="dpo", beta=0.5, dpo_label_smoothing=0.1),
        lambda m, r: reference_dpo(m, r, 0.5, 0.1),
    ),
    "orpo": (TrainConfig(method="orpo", orpo_lambda=0.3), lambda m, r: reference_orpo(m, r, 0.3)),
    "kto": (
        TrainConfig(method="kto", beta=0.4, kto_desirable_weight=1.0, kto_undesirable_weight=1.5),
        lambda m, r: reference_kto(m, r, 0.4, (1.0, 1.5)),
    ),
}


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def policy(request):
    return with_random_lora(tiny_llama(attn_implementation=request.param))


def rows_for(method: str, count: int, seed: int) -> list[dict]:
    return make_labelled(count, seed) if method == "kto" else make_pairs(count, seed)


def test_packed_pairs_share_rows_and_keep_their_pairing():
    rows = make_pairs(6, seed=7)
    padded = collate_pairs(rows, PAD, CPU)
    packed = collate_pairs(rows, PAD, CPU, pack_to=PACK_TO)
    assert packed["input_ids"].shape[0] < padded["input_ids"].shape[0] == 12
    assert packed["input_ids"].shape[1] <= PACK_TO and "attention_mask" not in packed
    assert torch.equal(packed["sequence_tokens"], padded["sequence_tokens"])
    # answer tokens are the same tokens, found in other rows: each sequence's targets in order
    for sequence in range(12):
        in_padded = padded["answer_targets"][padded["answer_sequences"] == sequence]
        assert torch.equal(packed["answer_targets"][packed["answer_sequences"] == sequence], in_padded)
    row_of = packed["answer_positions"] // packed["input_ids"].shape[1]
    rows_of_pair = [
        (
            set(row_of[packed["answer_sequences"] == i].tolist()),
            set(row_of[packed["answer_sequences"] == 6 + i].tolist()),
        )
        for i in range(6)
    ]
    assert any(chosen != rejected for chosen, rejected in rows_of_pair)  # a pair split over two rows
    # each segment restarts its positions at 0 and its first token is never trained
    starts = packed["position_ids"] == 0
    assert (packed["labels"][starts] == IGNORE_INDEX).all()


@pytest.mark.parametrize("method", METHODS)
def test_packed_losses_equal_padded_ones_and_the_papers_formulas(policy, method):
    train, reference = METHODS[method]
    rows = rows_for(method, 6, seed=11)
    # KTO's KL estimate is the micro-batch's, the formula's that of all rows
    micro_batch = 6 if method == "kto" else 3
    padded = step_loss(objective_for(train), policy, rows, micro_batch)
    packed = step_loss(objective_for(train, pack_to=PACK_TO), policy, rows, micro_batch)
    assert packed == pytest.approx(padded, abs=1e-6)
    assert packed == pytest.approx(reference(policy, rows), abs=1e-5)


def lora_gradients(model: torch.nn.Module, objective, rows: list[dict]) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    batch = objective.collate(rows, PAD, CPU)
    objective.loss(model, batch, objective.count(batch)).backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize("method", METHODS)
def test_packed_lora_gradients_equal_padded_ones(policy, method):
    train, _ = METHODS[method]
    rows = rows_for(method, 6, seed=12)
    padded = lora_gradients(policy, objective_for(train), rows)
    packed = lora_gradients(policy, objective_for(train, pack_to=PACK_TO), rows)
    assert padded.keys() == packed.keys() and all("lora_" in name for name in padded)
    for name in padded:
        assert torch.allclose(packed[name], padded[name], rtol=1e-5, atol=1e-6), name


def test_positions_that_do_not_restart_would_let_answers_see_each_other(policy):
    """What the equality above rests on: with one run of positions per row, transformers finds no segments
    and the packed answers attend to the ones before them, which changes their log-probs."""
    objective = objective_for(TrainConfig(method="dpo"), pack_to=PACK_TO)
    batch = objective.collate(make_pairs(6, seed=13), PAD, CPU)
    with torch.no_grad():
        segmented, _ = objective.log_probs(policy, batch)
        batch["position_ids"] = torch.arange(batch["input_ids"].shape[1]).expand_as(batch["input_ids"])
        leaking, _ = objective.log_probs(policy, batch)
    assert (segmented - leaking).abs().max() > 1e-3
