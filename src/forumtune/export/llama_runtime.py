"""llama.cpp itself, through llama-cpp-python: load a GGUF, tokenize, score tokens, decode greedily, quantize.

llama-cpp-python is optional (the `llama` extra); every entry point says how to get it.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from forumtune.export.errors import ExportError

INSTALL_HINT = (
    "pip install 'forumtune[llama]' (llama-cpp-python; pip compiles llama.cpp, 7-20 minutes on 2 cores)"
)


def llama_cpp_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def llama_threads() -> int:
    """About one per physical core: llama.cpp's threads spin at barriers, so more than the cores slows it down."""
    return max(1, (os.cpu_count() or 2) // 2)


class LlamaSession:
    """A model and its context, with the few operations export needs: tokenize, reset, eval → logits."""

    def __init__(self, path: Path, lora_path: Path | None, vocab_only: bool, n_ctx: int) -> None:
        import llama_cpp

        try:
            self.llama = llama_cpp.Llama(
                model_path=str(path),
                lora_path=str(lora_path) if lora_path else None,
                vocab_only=vocab_only,
                n_ctx=n_ctx,
                n_threads=llama_threads(),
                logits_all=True,
                n_gpu_layers=0,
                verbose=False,
            )
        except ValueError as error:  # llama-cpp-python reports every load failure as ValueError
            raise ExportError(f"llama.cpp could not load {path}: {error}") from error

    def tokenize(self, text: str, add_bos: bool) -> list[int]:
        return self.llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def reset(self) -> None:
        self.llama.reset()

    def eval(self, token_ids: list[int]) -> np.ndarray:
        start = self.llama.n_tokens
        self.llama.eval(token_ids)
        return np.array(self.llama.scores[start : self.llama.n_tokens], dtype=np.float32)

    def close(self) -> None:
        self.llama.close()


@contextmanager
def loaded_gguf(
    path: Path, lora_path: Path | None = None, vocab_only: bool = False, n_ctx: int = 512
) -> Iterator[Any]:
    """A llama.cpp session on the CPU (with the GGUF LoRA `lora_path` applied, when given)."""
    if not llama_cpp_available():
        raise ExportError(f"this needs llama.cpp's Python bindings: {INSTALL_HINT}.")
    session = LlamaSession(Path(path), Path(lora_path) if lora_path else None, vocab_only, n_ctx)
    try:
        yield session
    finally:
        session.close()


def tokenize(session: Any, text: str, add_bos: bool) -> list[int]:
    """Token ids as llama.cpp encodes `text` (special tokens written in the text are parsed as such)."""
    return session.tokenize(text, add_bos)


def logits_for(session: Any, token_ids: list[int]) -> np.ndarray:
    """Logits of every position (n_tokens × vocab), from a fresh context."""
    session.reset()
    return session.eval(token_ids)


def greedy_continuation(session: Any, token_ids: list[int], max_new_tokens: int) -> list[int]:
    """Argmax decoding without samplers or stopping, comparable with transformers' greedy decoding."""
    session.reset()
    logits = session.eval(token_ids)
    generated: list[int] = []
    for _ in range(max_new_tokens):
        generated.append(int(np.argmax(logits[-1])))
        logits = session.eval([generated[-1]])
    return generated


def quantize_with_bindings(source: Path, target: Path, ftype_name: str) -> None:
    """llama.cpp's llama_model_quantize, the function behind its llama-quantize tool."""
    if not llama_cpp_available():
        raise ExportError(f"quantizing to {ftype_name} needs llama.cpp: {INSTALL_HINT}.")
    import llama_cpp

    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype_name.upper()}", None)
    if ftype is None:
        raise ExportError(f"this llama.cpp build has no {ftype_name} quantization; update llama-cpp-python.")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.nthread = ftype, os.cpu_count() or 1
    if status := llama_cpp.llama_model_quantize(
        str(source).encode(), str(target).encode(), ctypes.byref(params)
    ):
        raise ExportError(f"llama.cpp could not quantize {source} to {ftype_name} (status {status}).")
