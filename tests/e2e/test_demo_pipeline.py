"""`forumtune run` on the bundled demo, for real: HTTP scrape, SQLite, 4-bit training, report, merge, GGUF."""

import subprocess
import sys

import gguf
import pytest
import torch
from peft import PeftModel
from rich.console import Console
from transformers import AutoModelForCausalLM

from forumtune.base_model import resolve_base_model
from forumtune.config import load_config
from forumtune.pipeline import STAGE_NAMES, run_pipeline
from tests.conftest import write_config

QUICK = {
    "train": {"max_steps": 6, "eval_every": 3, "save_every": 3},
    "eval": {"num_samples": 2, "max_new_tokens": 8},
}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One real run through the CLI, shared by the tests of this module."""
    config_path = write_config(tmp_path_factory.mktemp("demo"), **QUICK)
    result = subprocess.run(
        [sys.executable, "-m", "forumtune.cli", "run", str(config_path)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return config_path, load_config(config_path).run_dir, result.stdout


def test_run_writes_every_artifact(demo_run):
    _, run_dir, output = demo_run
    for stage in STAGE_NAMES:
        not_needed = stage in ("index", "train_then") and f"{stage}: not needed" in output
        assert f"{stage}: running" in output or not_needed
    assert "only smoke-tests the pipeline" in (run_dir / "report.html").read_text()
    assert (run_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    base = AutoModelForCausalLM.from_pretrained(resolve_base_model("builtin:tiny-llama"))
    adapted = PeftModel.from_pretrained(base, str(run_dir / "adapter"))
    merged = AutoModelForCausalLM.from_pretrained(run_dir / "merged")
    ids = torch.tensor([[1, 100, 200, 300]])
    with torch.no_grad():
        assert torch.allclose(adapted(ids).logits, merged(ids).logits, atol=1e-3)
    reader = gguf.GGUFReader(run_dir / "export" / "demo-f16.gguf")
    assert len(reader.tensors) == 1 + 4 * 9 + 2


def test_second_run_skips_every_stage(demo_run):
    config_path, _, _ = demo_run
    assert run_pipeline(load_config(config_path), Console(quiet=True)) == []


def test_deleting_an_artifact_reruns_just_its_stage(demo_run):
    config_path, run_dir, _ = demo_run
    (run_dir / "report.html").unlink()
    assert run_pipeline(load_config(config_path), Console(quiet=True)) == ["eval"]
    (run_dir / "export" / "demo-f16.gguf").unlink()
    assert run_pipeline(load_config(config_path), Console(quiet=True)) == ["export"]


def test_changing_a_train_setting_reruns_train_and_what_follows(demo_run):
    config_path, _, _ = demo_run
    config = load_config(config_path, ["train.max_steps=3"])
    assert run_pipeline(config, Console(quiet=True)) == ["train", "eval", "merge", "export"]
