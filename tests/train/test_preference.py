"""The preference losses against the papers' formulas, written out here one sequence at a time: each
sequence through the model alone (no padding), each answer token's log-probability summed in a loop."""

from __future__ import annotations

import math
import random

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from forumtune.config import TrainConfig
from forumtune.records import IGNORE_INDEX
from forumtune.train.objectives import DPO, KTO, ORPO, objective_for

VOCAB = 61
PAD = 0


def tiny_llama(seed: int = 0, **overrides) -> LlamaForCausalLM:
    """A tiny random Llama (2 layers, hidden 32, vocabulary 61); `overrides` change its config."""
    torch.manual_seed(seed)
    settings = {
        "vocab_size": VOCAB,
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 64,
        "pad_token_id": PAD,
    }
    return LlamaForCausalLM(LlamaConfig(**{**settings, **overrides}))


def with_random_lora(base: torch.nn.Module, **overrides) -> torch.nn.Module:
    """LoRA on every linear layer but the head, its B random too, so the policy differs from the base."""
    settings = {
        "r": 4,
        "lora_alpha": 8,
        "lora_dropout": 0.0,
        "target_modules": "all-linear",
        "init_lora_weights": False,
    }
    model = get_peft_model(base, LoraConfig(**{**settings, **overrides}))
    model.train()
    return model


@pytest.fixture(scope="module")
def policy():
    return with_random_lora(tiny_llama())


def tokens(rng: random.Random, count: int) -> list[int]:
    return [rng.randrange(1, VOCAB) for _ in range(count)]


def answer_row(prompt: list[int], answer: list[int]) -> dict:
    return {"input_ids": prompt + answer, "labels": [IGNORE_INDEX] * len(prompt) + answer}


def make_pairs(count: int, seed: int) -> list[dict]:
    """Prompts and answers of different lengths, so every batch is padded."""
    rng = random.Random(seed)
    rows = []
    for number in range(count):
        prompt = tokens(rng, rng.randint(2, 9))
        chosen, rejected = (
            answer_row(prompt, tokens(rng, rng.randint(1, 7))),
            answer_row(prompt, tokens(rng, rng.randint(1, 7))),
        )
        rows.append(
            {
                "thread_id": number,
                "prompt": [],
                "chosen": "",
                "rejected": "",
                "chosen_input_ids": chosen["input_ids"],
                "chosen_labels": chosen["labels"],
                "rejected_input_ids": rejected["input_ids"],
                "rejected_labels": rejected["labels"],
            }
        )
    return rows


def make_labelled(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for number in range(count):
        row = answer_row(tokens(rng, rng.randint(2, 9)), tokens(rng, rng.randint(1, 7)))
        rows.append({"thread_id": number, "prompt": [], "completion": "", "label": number % 3 != 1, **row})
    return rows


@torch.no_grad()
def answer_log_prob(
    model, input_ids: list[int], labels: list[int], *, adapter: bool = True
) -> tuple[float, int]:
    """Σ log p(token | earlier tokens) over the answer's tokens, the sequence alone, in float64."""
    was_training = model.training
    model.eval()
    if adapter:
        logits = model(input_ids=torch.tensor([input_ids])).logits[0].double()
    else:
        with model.disable_adapter():
            logits = model(input_ids=torch.tensor([input_ids])).logits[0].double()
    model.train(was_training)
    total, count = 0.0, 0
    for position in range(1, len(input_ids)):
        if labels[position] == IGNORE_INDEX:
            continue
        total += float(torch.log_softmax(logits[position - 1], dim=-1)[input_ids[position]])
        count += 1
    return total, count


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x > 0 else x - math.log1p(math.exp(x))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def reference_dpo(model, rows: list[dict], beta: float, smoothing: float) -> float:
    losses = []
    for row in rows:
        pc, _ = answer_log_prob(model, row["chosen_input_ids"], row["chosen_labels"])
        pr, _ = answer_log_prob(model, row["rejected_input_ids"], row["rejected_labels"])
        rc, _ = answer_log_prob(model, row["chosen_input_ids"], row["chosen_labels"], adapter=False)
        rr, _ = answer_log_prob(model, row["rejected_input_ids"], row["rejected_labels"], adapter=False)
        h = beta * ((pc - pr) - (rc - rr))
        losses.append(-(1 - smoothing) * log_sigmoid(h) - smoothing * log_sigmoid(-h))
    return sum(losses) / len(losses)


def reference_orpo(model, rows: list[dict], lam: float) -> float:
    """Hong et al. 2024, eq. 6-7: L_SFT (per chosen token) + λ · mean of −log σ(log odds ratio)."""
    nll_sum, nll_tokens, ratio_terms = 0.0, 0, []
    for row in rows:
        pc, nc = answer_log_prob(model, row["chosen_input_ids"], row["chosen_labels"])
        pr, nr = answer_log_prob(model, row["rejected_input_ids"], row["rejected_labels"])
        nll_sum, nll_tokens = nll_sum - pc, nll_tokens + nc
        mc, mr = pc / nc, pr / nr
        odds_c, odds_r = math.exp(mc) / (1 - math.exp(mc)), math.exp(mr) / (1 - math.exp(mr))
        ratio_terms.append(-log_sigmoid(math.log(odds_c / odds_r)))
    return nll_sum / nll_tokens + lam * sum(ratio_terms) / len(ratio_terms)


def reference_kto(model, rows: list[dict], beta: float, weights: tuple[float, float]) -> float:
    """Ethayarajh et al. 2024, eq. 8: z from each prompt with the previous row's answer, clamped at 0."""

    def prompt_end(row):
        return next(i for i, label in enumerate(row["labels"]) if label != IGNORE_INDEX)

    shifts = []
    for index, row in enumerate(rows):
        other = rows[index - 1]
        ids = row["input_ids"][: prompt_end(row)] + other["input_ids"][prompt_end(other) :]
        labels = [IGNORE_INDEX] * prompt_end(row) + other["input_ids"][prompt_end(other) :]
        shifts.append(
            answer_log_prob(model, ids, labels)[0] - answer_log_prob(model, ids, labels, adapter=False)[0]
        )
    z = max(0.0, sum(shifts) / len(shifts))
    losses = []
    for row in rows:
        r = (
            answer_log_prob(model, row["input_ids"], row["labels"])[0]
            - answer_log_prob(model, row["input_ids"], row["labels"], adapter=False)[0]
        )
        losses.append(
            weights[0] * (1 - sigmoid(beta * (r - z)))
            if row["label"]
            else weights[1] * (1 - sigmoid(beta * (z - r)))
        )
    return sum(losses) / len(losses)


def step_loss(objective, model, rows: list[dict], micro_batch: int) -> float:
    """The loop's arithmetic: micro-batch shares of the step's counts, summed."""
    batches = [
        objective.collate(rows[i : i + micro_batch], PAD, torch.device("cpu"))
        for i in range(0, len(rows), micro_batch)
    ]
    counts = [objective.count(b) for b in batches]
    from forumtune.train.objectives import Counts

    step = Counts(sum(c.items for c in counts), sum(c.tokens for c in counts))
    return float(sum(objective.loss(model, b, step).detach() for b in batches))


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_dpo_loss_equals_the_papers_formula_with_padding(policy, smoothing):
    rows = make_pairs(6, seed=1)
    objective = DPO(TrainConfig(method="dpo", beta=0.5, dpo_label_smoothing=smoothing))
    expected = reference_dpo(policy, rows, 0.5, smoothing)
    assert step_loss(objective, policy, rows, micro_batch=3) == pytest.approx(expected, abs=1e-5)
    assert (
        abs(expected - math.log(2)) > 1e-3
    )  # the adapter moved the policy: the loss is not its value at start


def test_orpo_loss_equals_the_papers_formula_with_padding(policy):
    rows = make_pairs(5, seed=2)
    objective = ORPO(TrainConfig(method="orpo", orpo_lambda=0.3))
    expected = reference_orpo(policy, rows, 0.3)
    assert step_loss(objective, policy, rows, micro_batch=2) == pytest.approx(expected, abs=1e-5)


def test_kto_loss_equals_the_papers_formula_with_padding(policy):
    rows = make_labelled(6, seed=3)
    objective = KTO(TrainConfig(method="kto", beta=0.4, kto_desirable_weight=1.0, kto_undesirable_weight=1.5))
    expected = reference_kto(policy, rows, 0.4, (1.0, 1.5))
    assert step_loss(objective, policy, rows, micro_batch=6) == pytest.approx(expected, abs=1e-5)


def test_dpo_starts_at_log_two_and_its_gradient_reaches_only_the_adapter():
    """With B = 0 (peft's init) policy and reference agree: loss log 2; the base stays frozen."""
    torch.manual_seed(1)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=PAD,
    )
    model = get_peft_model(
        LlamaForCausalLM(config), LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0)
    )
    model.train()
    objective = objective_for(TrainConfig(method="dpo"))
    rows = make_pairs(4, seed=4)
    batch = objective.collate(rows, PAD, torch.device("cpu"))
    loss = objective.loss(model, batch, objective.count(batch))
    assert float(loss) == pytest.approx(math.log(2), abs=1e-6)
    loss.backward()
    grads = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads and all("lora_B" in name for name in grads)
