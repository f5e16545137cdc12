"""SFT then DPO in one `forumtune run` (train.then), on the demo forum and the tiny built-in model: the second
training starts from the first's adapter in its own run dir, eval compares three models, merge and export
take the second's adapter, and a rerun runs only what a change touches."""

from __future__ import annotations

import json

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from forumtune.config import load_config
from forumtune.layout import RunLayout
from forumtune.pipeline import run_pipeline as run
from tests.conftest import write_config

QUIET = Console(quiet=True)
TWO_STEPS = {"max_steps": 2, "eval_every": 2, "save_every": 2, "micro_batch_size": 2, "grad_accum_steps": 1}


@pytest.fixture(scope="module")
def two_trainings(tmp_path_factory):
    root = tmp_path_factory.mktemp("two-trainings")
    config_path = write_config(
        root,
        model={"base": "builtin:tiny-llama", "load_in_4bit": False, "compute_dtype": "float32"},
        build={"preferences": True, "eval_fraction": 0.2, "max_seq_len": 256},
        train={
            **TWO_STEPS,
            "optimizer": "adamw",
            "gradient_checkpointing": False,
            "then": {"method": "dpo", "learning_rate": 1.0e-3, "beta": 0.3, "final_adapter": "last"},
        },
        eval={"num_samples": 2, "max_new_tokens": 4, "checkpoints": False, "greedy_baseline": False},
        export={"formats": ["gguf"]},
    )
    ran = run(load_config(config_path), QUIET)
    return config_path, ran


def test_the_run_trains_twice_and_the_second_starts_from_the_first(two_trainings):
    config_path, ran = two_trainings
    assert ran == ["scrape", "build", "train", "train_then", "eval", "merge", "export"]
    config = load_config(config_path)
    layout = RunLayout.of(config)
    second = layout.second
    assert second is not None and second.root == layout.root / "dpo"
    summary = json.loads(second.train_summary.read_text())
    assert summary["steps"] == 2
    sft, dpo = load_file(layout.adapter_weights), load_file(second.adapter_weights)
    assert sft.keys() == dpo.keys()
    # DPO moved the SFT adapter a little: every LoRA B starts from SFT's (non-zero) and is not equal to it.
    b_keys = [key for key in sft if "lora_B" in key]
    assert b_keys and all(sft[key].abs().sum() > 0 for key in b_keys)
    assert any(not torch.equal(sft[key], dpo[key]) for key in b_keys)
    assert max((sft[key] - dpo[key]).abs().max() for key in b_keys) < 0.5
    settings = json.loads((second.checkpoints / "settings.json").read_text())["settings"]
    assert settings["train.method"] == "dpo" and settings["train.init_adapter"] == str(layout.adapter)


def test_eval_sets_base_sft_and_sft_plus_dpo_side_by_side(two_trainings):
    config = load_config(two_trainings[0])
    layout = RunLayout.of(config)
    results = json.loads(layout.eval_metrics.read_text())
    assert [label for _, label in results["models"]] == ["base model", "SFT", "SFT + DPO"]
    assert results["first_eval_loss"] != results["tuned_eval_loss"]
    preferences = results["preferences"]
    assert preferences["reference"] == str(layout.adapter)  # DPO's reward is measured against SFT
    assert preferences["beta"] == 0.3
    for key in ("first_logprob_accuracy", "first_per_token_accuracy", "first_reward_accuracy"):
        assert 0 <= preferences[key] <= 1
    samples = [json.loads(line) for line in layout.eval_samples.read_text().splitlines()]
    assert samples and all(set(s["answers"]) == {"base", "first", "tuned"} for s in samples)
    report = layout.report.read_text()
    assert "SFT + DPO" in report and 'data-model="first"' in report
    assert f"{100 * preferences['first_reward_accuracy']:.1f}%" in report


def test_merge_folds_in_the_second_adapter(two_trainings):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from forumtune.base_model import resolve_base_model

    layout = RunLayout.of(load_config(two_trainings[0]))
    base = AutoModelForCausalLM.from_pretrained(resolve_base_model("builtin:tiny-llama"), dtype=torch.float32)
    expected = PeftModel.from_pretrained(base, str(layout.second.adapter)).merge_and_unload().state_dict()
    merged = {}
    for shard in layout.merged.glob("*.safetensors"):
        merged.update(load_file(shard))
    name = "model.layers.0.self_attn.q_proj.weight"
    torch.testing.assert_close(merged[name].float(), expected[name], atol=1e-2, rtol=1e-2)


def test_a_lost_second_adapter_reruns_the_second_training_and_what_follows(two_trainings):
    config = load_config(two_trainings[0])
    assert run(config, QUIET) == []
    layout = RunLayout.of(config)
    before = layout.adapter_weights.stat().st_mtime_ns
    for path in layout.second.adapter.iterdir():
        path.unlink()
    layout.second.adapter.rmdir()
    assert run(config, QUIET) == ["train_then", "eval", "merge", "export"]
    assert layout.second.adapter_weights.exists()
    assert layout.adapter_weights.stat().st_mtime_ns == before


def test_a_change_to_then_reruns_the_second_training_not_the_first(two_trainings):
    config_path, _ = two_trainings
    config = load_config(config_path)
    assert run(config, QUIET) == []
    sft_weights = RunLayout.of(config).adapter_weights
    before = sft_weights.stat().st_mtime_ns
    changed = load_config(config_path, ["train.then.learning_rate=2.0e-3"])
    assert run(changed, QUIET, until="train_then") == ["train_then"]
    assert sft_weights.stat().st_mtime_ns == before
    changed_first = load_config(
        config_path, ["train.then.learning_rate=2.0e-3", "train.learning_rate=1.0e-3"]
    )
    assert run(changed_first, QUIET, until="train_then") == ["train", "train_then"]
