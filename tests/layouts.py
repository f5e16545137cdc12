"""bitsandbytes' CPU 4-bit layout forced either way, so that any machine tests both (forumtune/cpu_layout.py).

"packed" is what a CPU with AVX512-BF16 gets: bitsandbytes sets every Linear4bit to pack itself in
eval mode, so a path that forgets to keep the trainable layout packs its weights there. On a CPU without
AVX512-BF16 that path fails too (bitsandbytes has no kernel for packed weights there; checked on an
emulated CPU without AVX-512), so training paths are tested on every machine. Generating in the packed
layout needs the kernel: where it is missing, generation stays trainable, as in a real run on that CPU.
"trainable" is what a CPU without AVX512-BF16 gets: bitsandbytes never packs, nor does forumtune.

In a subprocess: `python -m tests.layouts LAYOUT ARGS...` runs `forumtune ARGS...` with LAYOUT forced.
"""

from __future__ import annotations

import sys

import pytest

from forumtune.cpu_layout import packed_kernel_available as kernel_on_this_cpu

LAYOUTS = ("trainable", "packed")


def force_layout(layout: str, monkeypatch: pytest.MonkeyPatch | None = None) -> None:
    """Layers made after this call get `layout`'s default; set before the model is loaded."""
    import bitsandbytes.nn.modules

    from forumtune import cpu_layout

    packed = layout == "packed"
    kernel = packed and kernel_on_this_cpu()
    patches = (
        (bitsandbytes.nn.modules, "has_avx512bf16", lambda: packed),
        (cpu_layout, "packed_kernel_available", lambda: kernel),
    )
    for owner, name, value in patches:
        if monkeypatch is None:
            setattr(owner, name, value)
        else:
            monkeypatch.setattr(owner, name, value)


@pytest.fixture(params=LAYOUTS)
def cpu_layout(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    force_layout(request.param, monkeypatch)
    return request.param


def forumtune_command(layout: str, *args: str) -> list[str]:
    """The `forumtune ARGS` command line for a subprocess, with `layout` forced."""
    return [sys.executable, "-m", "tests.layouts", layout, *args]


if __name__ == "__main__":
    force_layout(sys.argv.pop(1))
    sys.argv[0] = "forumtune"
    from forumtune.cli import main

    main()
