"""Library output a forumtune user cannot act on, silenced in one place when the command starts.

Each entry says why it is noise. Warnings that ask the user to change something (a CUDA kernel that is
missing, an autograd kernel bitsandbytes did not register, an out-of-memory advice) are left alone.
Called before the libraries are imported, so nothing here imports them.
"""

from __future__ import annotations

import logging
import os
import warnings

# (logger, message start): records dropped from that logger.
DROPPED_LOG_RECORDS = (
    # bitsandbytes, on a CPU with AVX512-BF16, tries to download a faster inference kernel from the Hugging
    # Face hub at import and logs a warning on every load when the optional `kernels` package is absent; its
    # own fallback is used instead, and training never uses that kernel.
    ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward from kernels-community"),
)


class DropMessages(logging.Filter):
    def __init__(self, starts: tuple[str, ...]) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


def quiet_libraries() -> None:
    """Our own progress display replaces the libraries' bars; their advice meant for developers is dropped."""
    # Read when transformers and huggingface_hub are imported; a user who sets them keeps their choice.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    by_logger: dict[str, tuple[str, ...]] = {}
    for name, start in DROPPED_LOG_RECORDS:
        by_logger[name] = (*by_logger.get(name, ()), start)
    for name, starts in by_logger.items():
        logging.getLogger(name).addFilter(DropMessages(starts))
    warnings.filterwarnings("ignore", message="Paged optimizers are not supported on CPU")
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")
    warnings.filterwarnings("ignore", category=UserWarning, module="torch.utils.checkpoint")
    # renames announced for transformers 6 (gradient_checkpointing_* -> activation_checkpointing_*), said
    # to library authors, not to someone training a model
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
