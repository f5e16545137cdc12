"""TRL's preference trainers as a second reference for forumtune's DPO, ORPO and KTO losses: each loss as TRL
1.15 computes it (its trainers' own compute_loss, collators and log-prob heads; tests/train/trl_reference.py,
run in a process of its own), on the same tiny model with the same weights and the same rows as forumtune's
objectives here, within 1e-5. The rows have prompts and answers of different lengths, so both sides pad;
forumtune splits them into micro-batches (its step's losses sum to the mean), TRL takes them in one batch.

forumtune's side runs padded and packed (build.packing: several answers to a row of PACK_TO tokens, each a
segment of its own); TRL's is padded (TRL 1.15's DPOTrainer turns padding_free off).

Where TRL's definition differs from forumtune's, the tests compare what is the same:
- DPO label smoothing: TRL 1.15's `sigmoid` loss does not apply label_smoothing, so conservative DPO is
  checked against the paper's formula only (tests/train/test_preference.py).
- ORPO's NLL: TRL's counts the prompt's tokens too ("computed over the full prompt and response",
  ORPOTrainer.concatenated_forward), forumtune's only the answer's, as the paper's L_SFT on the chosen answer.
  With one-token prompts (never a prediction target) the two agree and the whole loss is compared; with
  longer prompts, the odds-ratio term.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from forumtune.config import TrainConfig
from forumtune.train.objectives import DPO, KTO, ORPO, Counts
from tests.train import trl_reference as trl
from tests.train.test_preference import step_loss

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trl_results(tmp_path_factory, tiny_tokenizer) -> Path:
    """TRL's figures for every case (one process, about half a minute); tiny_tokenizer puts the built-in
    tokenizer in this session's cache first."""
    out = tmp_path_factory.mktemp("trl")
    done = subprocess.run(
        [sys.executable, "-m", "tests.train.trl_reference", str(out)],
        cwd=ROOT,
        env={**os.environ, "TRITON_INTERPRET": "1"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def case(results: Path, name: str) -> tuple[torch.nn.Module, dict]:
    """TRL's figures for a case, and the model with the weights TRL computed them with."""
    model = trl.lora_model()
    model.load_state_dict(load_file(str(results / f"{name}.safetensors")), strict=True)
    model.train()
    return model, json.loads((results / f"{name}.json").read_text())


PACK_TO = 24  # two or three of the rows' answers (3 to 16 tokens) to a packed row
PACKING = pytest.mark.parametrize("pack_to", [None, PACK_TO], ids=["padded", "packed"])


@PACKING
def test_dpo_loss_equals_trls_dpo_trainer_with_padding(trl_results, pack_to):
    model, figures = case(trl_results, "dpo")
    rows, beta = trl.CASES["dpo"][0](), trl.CASES["dpo"][1]
    assert figures["padded"]
    objective = DPO(TrainConfig(method="dpo", beta=beta), pack_to=pack_to)
    forumtune = step_loss(objective, model, rows, micro_batch=4)
    assert forumtune == pytest.approx(figures["loss"], abs=1e-5)
    assert abs(figures["loss"] - math.log(2)) > 1e-3  # the random adapter moved the policy from the reference


@PACKING
def test_dpo_gradients_equal_trls(trl_results, pack_to):
    """The adapter's gradients of forumtune's loss (micro-batches of 4 and 2 pairs, summed) against those of
    TRL's (one batch)."""
    model, _ = case(trl_results, "dpo")
    expected = load_file(str(trl_results / "dpo" / "grads.safetensors"))
    rows, beta = trl.CASES["dpo"][0](), trl.CASES["dpo"][1]
    objective = DPO(TrainConfig(method="dpo", beta=beta), pack_to=pack_to)
    batches = [objective.collate(part, 0, torch.device("cpu")) for part in (rows[:4], rows[4:])]
    counts = [objective.count(b) for b in batches]
    step = Counts(sum(c.items for c in counts), sum(c.tokens for c in counts))
    sum(objective.loss(model, b, step) for b in batches).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(grads) == set(expected) and len(grads) > 0
    scale = max(float(g.abs().max()) for g in expected.values())
    worst = max(float((grads[n] - g).abs().max()) for n, g in expected.items())
    assert scale > 1e-3 and worst <= 1e-5 * scale


@PACKING
def test_orpo_loss_equals_trls_orpo_trainer_with_padding(trl_results, pack_to):
    """One-token prompts: TRL's NLL (prompt and answer) and forumtune's (answer) count the same tokens."""
    model, figures = case(trl_results, "orpo_one_token_prompts")
    make_rows, lam = trl.CASES["orpo_one_token_prompts"]
    objective = ORPO(TrainConfig(method="orpo", orpo_lambda=lam), pack_to=pack_to)
    assert step_loss(objective, model, make_rows(), micro_batch=2) == pytest.approx(figures["loss"], abs=1e-5)


def test_orpo_odds_ratio_term_equals_trls_with_longer_prompts(trl_results):
    """Prompts of 2-9 tokens: TRL's odds-ratio term (its odds_ratio_loss) against forumtune's, read as the
    change of forumtune's loss per unit of orpo_lambda (the NLL term does not depend on it)."""
    model, figures = case(trl_results, "orpo")
    rows = trl.CASES["orpo"][0]()

    def forumtune(lam: float) -> float:
        return step_loss(ORPO(TrainConfig(method="orpo", orpo_lambda=lam)), model, rows, micro_batch=2)

    assert (forumtune(0.3) - forumtune(0.1)) / 0.2 == pytest.approx(figures["odds_ratio_term"], abs=1e-5)


@PACKING
def test_kto_loss_equals_trls_kto_trainer_with_padding(trl_results, pack_to):
    model, figures = case(trl_results, "kto")
    make_rows, beta = trl.CASES["kto"]
    desirable, undesirable = trl.KTO_WEIGHTS
    objective = KTO(
        TrainConfig(
            method="kto", beta=beta, kto_desirable_weight=desirable, kto_undesirable_weight=undesirable
        ),
        pack_to=pack_to,
    )
    assert step_loss(objective, model, make_rows(), micro_batch=6) == pytest.approx(figures["loss"], abs=1e-5)
    assert figures["kl"] > 0  # the KL estimate (clamped at 0) took part in the loss
