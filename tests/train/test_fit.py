"""What `forumtune plan --fit` changes: the fastest settings that fit the card, the effective batch kept."""

from forumtune.train.fit import fit_settings
from forumtune.train.plan import GIB, load_shape, plan_memory, whole_process_bytes
from tests.train.conftest import mistral


def test_fit_keeps_the_effective_batch_and_the_sequence_when_it_can(mistral_7b_dir):
    config = mistral(
        mistral_7b_dir,
        "build.max_seq_len=1024",
        "train.micro_batch_size=2",
        "train.grad_accum_steps=8",
        "train.gradient_checkpointing=false",
    )
    changes = fit_settings(config, vram_gib=8)
    assert changes and "build.max_seq_len" not in changes
    micro = changes.get("train.micro_batch_size", 2)
    assert micro * changes.get("train.grad_accum_steps", 8) == 16
    fitted = config.model_copy(
        update={
            "train": config.train.model_copy(
                update={
                    "gradient_checkpointing": changes.get("train.gradient_checkpointing", False),
                    "micro_batch_size": micro,
                    "grad_accum_steps": changes.get("train.grad_accum_steps", 8),
                }
            )
        }
    )
    assert plan_memory(fitted, vram_gib=8).fits and not plan_memory(config, vram_gib=8).fits


def test_fit_halves_the_sequence_only_when_nothing_else_fits(mistral_7b_dir):
    config = mistral(mistral_7b_dir, "build.max_seq_len=4096", "train.embeddings_on_host=false")
    changes = fit_settings(config, vram_gib=7)
    assert changes["build.max_seq_len"] < 4096 and changes["train.gradient_checkpointing"] == "offload"
    assert fit_settings(mistral(mistral_7b_dir), vram_gib=2) is None  # the 4-bit weights alone are 3.4 GiB


def test_fit_settings_fit_the_whole_count(mistral_7b_dir):
    config = mistral(
        mistral_7b_dir,
        "build.max_seq_len=4096",
        "train.micro_batch_size=4",
        "train.grad_accum_steps=4",
        "train.gradient_checkpointing=false",
    )
    changes = fit_settings(config, vram_gib=8)
    assert changes is not None
    micro = changes.get("train.micro_batch_size", 4)
    seq = changes.get("build.max_seq_len", 4096)
    mode = changes.get("train.gradient_checkpointing", False)
    shape = load_shape(config)
    assert whole_process_bytes(config, shape, micro, seq, mode) <= 7.6 * GIB
    assert not plan_memory(config, vram_gib=8).fits
    assert micro * changes.get("train.grad_accum_steps", 4) == 16
