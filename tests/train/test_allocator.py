"""The allocator switch changes PyTorch's real allocator settings, and leaves a user's own alone. Each
case runs in a fresh interpreter: the settings are process-wide."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from forumtune.train import allocator
from forumtune.train.allocator import ALLOCATOR_ENV_VARS, expandable_segments_unsupported

# loads the one module by path, so the probe process imports nothing but torch before the switch
PROBE = """
import importlib.util, sys, torch
spec = importlib.util.spec_from_file_location("allocator", sys.argv[1])
allocator = importlib.util.module_from_spec(spec)
spec.loader.exec_module(allocator)
use_expandable_segments = allocator.use_expandable_segments
get = getattr(torch._C, "_accelerator_getAllocatorSettings", None)
before = get() if get else ""
print(use_expandable_segments())
print("before=" + before)
print("after=" + (get() if get else "unknown"))
"""


def probe(extra_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ALLOCATOR_ENV_VARS}
    env.update(extra_env)
    done = subprocess.run(
        [sys.executable, "-W", "error::FutureWarning", "-c", PROBE, allocator.__file__],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    message, before, after = done.stdout.strip().splitlines()[-3:]
    return {
        "message": message,
        "before": before.removeprefix("before="),
        "after": after.removeprefix("after="),
    }


@pytest.mark.skipif(expandable_segments_unsupported() is not None, reason="no CUDA virtual memory calls here")
def test_turns_on_expandable_segments_without_deprecated_calls():
    result = probe({})
    assert result["message"] == "CUDA allocator: expandable segments"
    assert result["before"] == ""
    assert result["after"] in ("expandable_segments:True", "unknown")


@pytest.mark.parametrize("name", ALLOCATOR_ENV_VARS)
def test_a_user_setting_wins(name):
    result = probe({name: "max_split_size_mb:256"})
    assert result["message"] == f"CUDA allocator: left as {name}='max_split_size_mb:256' sets it"
    assert result["after"] == result["before"]
    assert "expandable_segments" not in result["after"]
