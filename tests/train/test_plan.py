import pytest
from transformers import MistralConfig

from forumtune.config import load_config
from forumtune.train.plan import GIB, plan_memory
from tests.conftest import DEMO_CONFIG


@pytest.fixture(scope="module")
def mistral_7b_dir(tmp_path_factory):
    """Only config.json: the planner must not need the weights."""
    path = tmp_path_factory.mktemp("mistral-7b")
    MistralConfig(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=8).save_pretrained(path)
    return path


def test_mistral_7b_4bit_weights_are_about_3_6_gib(mistral_7b_dir):
    config = load_config(DEMO_CONFIG, [f"model.base={mistral_7b_dir}"])
    plan = plan_memory(config)
    quantized = plan.parts["base weights (quantized linear)"] / GIB
    assert 3.2 < quantized < 3.6  # 7.0B linear weights at 4.127 bits each, with double-quantized constants
    assert plan.parts["embeddings, head, norms"] / GIB == pytest.approx(2 * 32000 * 4096 * 4 / GIB, rel=0.01)


def test_longer_sequences_cost_more_and_checkpointing_saves_memory(mistral_7b_dir):
    short = plan_memory(load_config(DEMO_CONFIG, [f"model.base={mistral_7b_dir}", "build.max_seq_len=512"]))
    long = plan_memory(load_config(DEMO_CONFIG, [f"model.base={mistral_7b_dir}", "build.max_seq_len=2048"]))
    no_checkpointing = plan_memory(load_config(DEMO_CONFIG, [f"model.base={mistral_7b_dir}", "build.max_seq_len=2048",
                                                             "train.gradient_checkpointing=false"]))
    assert short.total < long.total < no_checkpointing.total


def test_fits_depends_on_the_card(mistral_7b_dir):
    config = load_config(DEMO_CONFIG, [f"model.base={mistral_7b_dir}", "build.max_seq_len=1024"])
    assert plan_memory(config, vram_gib=80).fits
    assert not plan_memory(config, vram_gib=4).fits


def test_plan_cli_prints_the_table_and_verdict(mistral_7b_dir):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "forumtune.cli", "plan", str(DEMO_CONFIG), "--vram", "4",
                             "--set", f"model.base={mistral_7b_dir}"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "does not fit" in result.stdout and "train.micro_batch_size" in result.stdout
