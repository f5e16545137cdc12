from pathlib import Path

import pytest

from forumtune.config import load_config
from forumtune.errors import ConfigError
from tests.conftest import DEMO_CONFIG, write_config


def test_demo_config_resolves_paths_relative_to_the_file():
    config = load_config(DEMO_CONFIG)
    assert config.name == "demo"
    assert config.scrape.serve_dir == DEMO_CONFIG.parent / "demo_forum"
    assert config.run_dir == DEMO_CONFIG.parent / "runs" / "demo"
    assert config.train.max_steps == 40
    assert config.model.base == "builtin:smollm2-135m-instruct" and not config.model.load_in_4bit


def test_paths_and_path_like_names_are_relative_to_the_config_file():
    config = load_config(
        DEMO_CONFIG,
        [
            "model.base=./models/mine",
            "eval.embedding_model=../minilm",
            "export.llama_quantize=bin/llama-quantize",
            "build.input_file=data.jsonl",
        ],
    )
    folder = DEMO_CONFIG.parent
    assert config.model.base == str(folder / "models" / "mine")
    assert config.eval.embedding_model == str(folder / ".." / "minilm")
    assert config.export.llama_quantize == folder / "bin" / "llama-quantize"
    assert config.build.input_file == folder / "data.jsonl"
    hub = load_config(
        DEMO_CONFIG, ["model.base=mistralai/Mistral-7B-Instruct-v0.2", "eval.embedding_model=auto"]
    )
    assert hub.model.base == "mistralai/Mistral-7B-Instruct-v0.2" and hub.eval.embedding_model == "auto"


def test_overrides_parse_values_as_yaml():
    config = load_config(
        DEMO_CONFIG,
        ["train.max_steps=7", "train.gradient_checkpointing=false", "lora.target_modules=[q_proj, v_proj]"],
    )
    assert config.train.max_steps == 7
    assert config.train.gradient_checkpointing is False
    assert config.lora.target_modules == ["q_proj", "v_proj"]


def test_unknown_key_is_named(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"train\.max_stepz: unknown key"):
        load_config(DEMO_CONFIG, ["train.max_stepz=3"])


def test_bad_value_names_key_and_allowed_values():
    with pytest.raises(ConfigError) as error:
        load_config(DEMO_CONFIG, ["train.optimizer=sgd"])
    assert "train.optimizer" in str(error.value)
    assert "paged_adamw_8bit" in str(error.value)


def test_unknown_template_lists_the_known_ones():
    with pytest.raises(ConfigError, match="chatml"):
        load_config(DEMO_CONFIG, ["build.chat_template=vicuna"])


def test_malformed_yaml_and_missing_file(tmp_path: Path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: demo\nscrape: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_missing_required_section(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\n")
    with pytest.raises(ConfigError, match="scrape: required key is missing"):
        load_config(path)


def test_write_config_helper_keeps_demo_defaults(tmp_path: Path):
    config = load_config(write_config(tmp_path, train={"max_steps": 3}))
    assert config.train.max_steps == 3 and config.run_dir == tmp_path / "runs" / "demo"
