import subprocess
import sys

import yaml

from tests.conftest import DEMO_CONFIG


def forumtune(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "forumtune.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_config_prints_the_resolved_config_with_overrides():
    result = forumtune("config", str(DEMO_CONFIG), "--set", "train.max_steps=30")
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert resolved["train"]["max_steps"] == 30
    assert resolved["lora"]["target_modules"] == "all-linear"
    assert resolved["chat"]["host"] == "127.0.0.1"  # defaults are filled in


def test_bad_key_fails_before_any_work_naming_the_key(tmp_path):
    result = forumtune("train", str(DEMO_CONFIG), "--set", "train.lr=0.1")
    assert result.returncode == 2
    assert "train.lr: unknown key" in result.stderr and result.stdout == ""
    assert "Traceback" not in result.stdout + result.stderr
