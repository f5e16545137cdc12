"""What to change when a training runs out of GPU memory, in the order that costs the least speed: said
when a step runs out (train/loop.py) and when the memory plan says a run will not fit (plan.py,
preflight.py)."""

from __future__ import annotations

from forumtune.config import Config
from forumtune.kernels.liger import liger_available
from forumtune.train.tiled_mlp import AUTO_ABOVE_TOKENS


def oom_advice(config: Config) -> str:
    train = config.train
    advice = []
    if train.micro_batch_size > 1:
        advice.append(
            f"train.micro_batch_size={train.micro_batch_size // 2} with "
            f"train.grad_accum_steps={train.grad_accum_steps * 2} (same effective batch)"
        )
    if train.fast_path and not liger_available():
        advice.append(
            "pip install 'forumtune[gpu]' (liger-kernel's loss never holds the full-vocabulary logits)"
        )
    if train.gradient_checkpointing is False:
        advice.append("train.gradient_checkpointing=true")
    elif train.gradient_checkpointing is True:
        advice.append("train.gradient_checkpointing=offload")
    if not train.fast_path:
        advice.append("train.fast_path=true")
    elif train.split_attention == "off" and config.build.max_seq_len > AUTO_ABOVE_TOKENS:
        advice.append("train.split_attention=auto (long rows' attention a group of heads at a time)")
    elif train.cuda_graphs and train.gradient_checkpointing:
        advice.append("train.cuda_graphs=false (the graphs keep one layer's backward in a pool of their own)")
    advice.append(f"build.max_seq_len={max(64, config.build.max_seq_len // 2)}")
    return (
        "the GPU ran out of memory. Try, in this order: "
        + "; ".join(advice)
        + ". `forumtune plan CONFIG --fit` finds the settings that fit before you train."
    )
