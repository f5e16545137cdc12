"""Shared fixtures: the bundled demo forum, served for real on 127.0.0.1, and the built-in tiny model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.layouts import cpu_layout  # noqa: F401  (a fixture: bitsandbytes' CPU 4-bit layout forced either way)

ROOT = Path(__file__).resolve().parent.parent
DEMO_FORUM = ROOT / "examples" / "demo_forum"
DEMO_CONFIG = ROOT / "examples" / "demo.yaml"  # the real demo (SmolLM2-135M-Instruct)
SMOKE_CONFIG = ROOT / "tests" / "fixtures" / "smoke.yaml"  # the demo forum on the tiny random model


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keep the built-in tiny model of this test session out of the user's cache."""
    path = tmp_path_factory.mktemp("forumtune-cache")
    previous = os.environ.get("FORUMTUNE_CACHE_DIR")
    os.environ["FORUMTUNE_CACHE_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("FORUMTUNE_CACHE_DIR", None)
    else:
        os.environ["FORUMTUNE_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def demo_forum() -> Path:
    return DEMO_FORUM


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from forumtune.base_model import load_tokenizer

    return load_tokenizer("builtin:tiny-llama")


def write_config(tmp_path: Path, **sections: dict) -> Path:
    """A smoke-test config (the demo forum, the tiny model) in tmp_path with some sections replaced; runs land
    in tmp_path/runs."""
    import yaml

    raw = yaml.safe_load(SMOKE_CONFIG.read_text())
    raw["scrape"]["serve_dir"] = str(DEMO_FORUM)
    for name, values in sections.items():
        raw.setdefault(name, {})
        raw[name].update(values)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path
