"""train.then (a second training after the SFT one) is checked when the config loads: each mistake names
its key and what to do, before any work starts."""

from __future__ import annotations

import pytest

from forumtune.config import load_config
from forumtune.errors import ConfigError
from forumtune.layout import RunLayout
from forumtune.pipeline import STAGES, stage_fingerprint
from tests.conftest import write_config

DPO = {"method": "dpo", "learning_rate": 5.0e-5, "epochs": 1}


def load(tmp_path, then, train=None, build=None, overrides=None):
    build = {"preferences": True} if build is None else build
    return load_config(write_config(tmp_path, train={**(train or {}), "then": then}, build=build), overrides)


def test_then_merges_over_the_first_training(tmp_path):
    config = load(tmp_path, DPO, train={"micro_batch_size": 2, "learning_rate": 1.0e-3})
    second = config.second_training(RunLayout.of(config).adapter)
    assert second is not None
    assert (second.train.method, second.train.learning_rate, second.train.epochs) == ("dpo", 5.0e-5, 1)
    assert second.train.micro_batch_size == 2  # not in then: the first training's value
    assert second.train.init_adapter == config.run_dir / "adapter" and second.train.then is None
    assert RunLayout.of(config).second.root == config.run_dir / "dpo"
    assert RunLayout.of(config).final.adapter == config.run_dir / "dpo" / "adapter"


@pytest.mark.parametrize(
    ("then", "train", "build", "message"),
    [
        ({"learning_rate": 1e-4}, {}, None, "train.then.method: set dpo, orpo or kto"),
        ({"method": "dpo", "learnin_rate": 1e-4}, {}, None, "train.then.learnin_rate: not a train key"),
        ({"method": "dpo", "init_adapter": "x"}, {}, None, "train.then.init_adapter: it starts from"),
        ({"method": "dpo", "then": {"method": "kto"}}, {}, None, "train.then.then: a third training"),
        ({"method": "dpo", "beta": -1}, {}, None, "train.then.beta: Input should be greater than 0"),
        ({"method": "kto", "micro_batch_size": 1}, {}, None, "train.method=kto needs train.micro_batch_size"),
        (DPO, {"method": "orpo"}, None, "train.then follows an SFT training, but train.method is orpo"),
        (DPO, {}, {"preferences": False}, "train.then trains on preference pairs: set build.preferences"),
    ],
)
def test_a_wrong_then_is_refused_at_load_time(tmp_path, then, train, build, message):
    with pytest.raises(ConfigError, match="invalid config") as error:
        load(tmp_path, then, train, build)
    assert message in str(error.value)


def test_then_changes_the_second_trainings_fingerprint_not_the_firsts(tmp_path):
    base = load(tmp_path, DPO)
    changed = load(tmp_path, DPO, overrides=["train.then.learning_rate=1.0e-4"])
    by_name = {stage.name: stage for stage in STAGES}
    assert stage_fingerprint(by_name["train"], changed) == stage_fingerprint(by_name["train"], base)
    assert stage_fingerprint(by_name["train_then"], changed) != stage_fingerprint(by_name["train_then"], base)
