"""Held-out preference accuracy and reward margins against log-probs computed one sequence at a time."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from forumtune.config import Config
from forumtune.eval.preferences import preference_metrics
from tests.train.test_preference import PAD, VOCAB, answer_log_prob, make_pairs


def fresh_base(config: LlamaConfig) -> LlamaForCausalLM:
    torch.manual_seed(0)  # the same base weights every time
    return LlamaForCausalLM(config)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random Llama and two random adapters of it: the tuned one and the one training started from."""
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=PAD,
    )
    root = tmp_path_factory.mktemp("adapters")
    adapters = {}
    for name, seed in (("tuned", 1), ("start", 2)):
        base = fresh_base(config)
        torch.manual_seed(seed)
        lora = LoraConfig(
            r=4, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", init_lora_weights=False
        )
        get_peft_model(base, lora).save_pretrained(root / name)
        adapters[name] = root / name
    return config, adapters


def expected(model, rows, beta, reference_adapter: bool):
    chosen, margins, ranked = [], [], []
    for row in rows:
        c = answer_log_prob(model, row["chosen_input_ids"], row["chosen_labels"])[0]
        r = answer_log_prob(model, row["rejected_input_ids"], row["rejected_labels"])[0]
        if reference_adapter:
            model.set_adapter("start")
            rc = answer_log_prob(model, row["chosen_input_ids"], row["chosen_labels"])[0]
            rr = answer_log_prob(model, row["rejected_input_ids"], row["rejected_labels"])[0]
            model.set_adapter("default")
        else:
            rc = answer_log_prob(model, row["chosen_input_ids"], row["chosen_labels"], adapter=False)[0]
            rr = answer_log_prob(model, row["rejected_input_ids"], row["rejected_labels"], adapter=False)[0]
        base_c = answer_log_prob(model, row["chosen_input_ids"], row["chosen_labels"], adapter=False)[0]
        base_r = answer_log_prob(model, row["rejected_input_ids"], row["rejected_labels"], adapter=False)[0]
        chosen.append(c > r)
        ranked.append(base_c > base_r)
        margins.append(beta * (c - rc) - beta * (r - rr))
    return {
        "tuned_logprob_accuracy": sum(chosen) / len(rows),
        "base_logprob_accuracy": sum(ranked) / len(rows),
        "tuned_reward_accuracy": sum(m > 0 for m in margins) / len(rows),
        "reward_margin": sum(margins) / len(rows),
    }


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_accuracy_and_margin_match_one_sequence_at_a_time(tiny, method):
    config, adapters = tiny
    rows = make_pairs(12, seed=7)
    model = PeftModel.from_pretrained(fresh_base(config), str(adapters["tuned"]))
    settings = {
        "method": method,
        "beta": 0.3,
        **({"init_adapter": str(adapters["start"])} if method == "dpo" else {}),
    }
    run_config = Config.model_validate({"name": "t", "scrape": {"url": "/"}, "train": settings})
    got = preference_metrics(model, rows, run_config, 5, PAD, torch.device("cpu"))
    assert "start" not in model.peft_config  # the reference adapter is loaded for the measurement only
    if method == "dpo":
        model.load_adapter(str(adapters["start"]), adapter_name="start")
    want = expected(model, rows, 0.3, reference_adapter=method == "dpo")
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-5), key
    assert got["pairs"] == 12 and got["reference"] == ("base" if method == "sft" else str(adapters["start"]))


def test_the_eval_stage_reports_preference_accuracy(evaluated_run):
    import json

    results = json.loads((evaluated_run.run_dir / "eval" / "metrics.json").read_text())
    preferences = results["preferences"]
    assert preferences["pairs"] == 5 and preferences["reference"] == "base"
    for key in ("base_logprob_accuracy", "tuned_logprob_accuracy", "tuned_reward_accuracy"):
        assert preferences[key] in {i / 5 for i in range(6)}
    report = (evaluated_run.run_dir / "report.html").read_text()
    assert 'id="preferences"' in report
    assert f"{100 * preferences['tuned_reward_accuracy']:.1f}%" in report
    assert f"{preferences['reward_margin']:.3f}" in report
