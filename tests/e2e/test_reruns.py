"""What a config change reruns, on a real run of the tiny built-in model: a logging-only or runtime-only
key reruns nothing; a key that changes the adapter reruns training and everything after it."""

from __future__ import annotations

import pytest
from rich.console import Console

from forumtune.config import load_config
from forumtune.layout import RunLayout
from forumtune.pipeline import STAGES, stage_fingerprint, stale_reason
from forumtune.pipeline import run_pipeline as run
from tests.conftest import write_config
from tests.test_pipeline import write_messages

QUIET = Console(quiet=True)
# keys that decide where logs go, what is checked first, or how the same computation is scheduled
NOT_RERUNNING = [
    "train.report_to=[tensorboard]",
    "train.wandb_mode=offline",
    "train.wandb_project=other",
    "train.plan_check=false",
    "train.expandable_segments=false",
    "train.cuda_graphs=false",
    "train.dequantize_kernel=bitsandbytes",
    "train.save_every=1",
    "train.keep_checkpoints=5",
    "export.verify=true",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A whole run on the user's own JSONL (no scrape): build, 2 training steps, eval, merge, GGUF."""
    root = tmp_path_factory.mktemp("reruns")
    data = root / "mine.jsonl"
    write_messages(data, 24, "Warm the wax and scrape it thin once it cools down")
    config_path = write_config(
        root,
        model={"base": "builtin:tiny-llama", "compute_dtype": "float32"},
        build={"input_file": str(data), "near_duplicate_threshold": None, "eval_fraction": 0.2},
        train={
            "max_steps": 2,
            "eval_every": 2,
            "save_every": 2,
            "micro_batch_size": 2,
            "grad_accum_steps": 1,
        },
        eval={"num_samples": 1, "max_new_tokens": 4, "checkpoints": False},
        export={"formats": ["gguf"]},
    )
    assert run(load_config(config_path), QUIET) == ["build", "train", "eval", "merge", "export"]
    return config_path


def test_changing_logging_and_runtime_keys_reruns_nothing(trained):
    config = load_config(trained, NOT_RERUNNING)
    adapter = RunLayout.of(config).adapter_weights
    before = adapter.stat().st_mtime_ns
    built = [
        stage for stage in STAGES if stage.name not in ("scrape", "index")
    ]  # the run had no store to index
    assert [stale_reason(stage, config, config.run_dir) for stage in built] == [None] * len(built)
    assert run(config, QUIET) == []
    assert adapter.stat().st_mtime_ns == before


def test_changing_lora_r_reruns_train_and_what_follows(trained):
    config = load_config(trained, ["lora.r=4"])
    reason = stale_reason(next(s for s in STAGES if s.name == "train"), config, config.run_dir)
    assert reason == "its settings (model, lora, train, seed) changed"
    assert run(config, QUIET) == ["train", "eval", "merge", "export"]
    assert run(config, QUIET) == []


@pytest.mark.parametrize("change", NOT_RERUNNING)
def test_each_runtime_key_leaves_every_fingerprint_alone(tmp_path, change):
    base, changed = load_config(write_config(tmp_path)), load_config(write_config(tmp_path), [change])
    assert base != changed
    assert [stage_fingerprint(s, changed) for s in STAGES] == [stage_fingerprint(s, base) for s in STAGES]


@pytest.mark.parametrize(
    ("change", "stage"),
    [
        ("lora.r=4", "train"),
        ("train.eval_every=5", "train"),
        ("eval.loss_batch_size=1", "eval"),
        ("seed=7", "build"),
    ],
)
def test_keys_that_change_an_output_change_its_fingerprint(tmp_path, change, stage):
    base, changed = load_config(write_config(tmp_path)), load_config(write_config(tmp_path), [change])
    chosen = next(s for s in STAGES if s.name == stage)
    assert stage_fingerprint(chosen, changed) != stage_fingerprint(chosen, base)
