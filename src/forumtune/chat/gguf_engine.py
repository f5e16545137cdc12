"""A chat engine over the exported GGUF file, run by llama.cpp through llama-cpp-python (optional).

The prompt is built with the Hugging Face tokenizer's chat template, exactly as for the other engines,
and handed to llama.cpp as token ids: the GGUF vocabulary is the same one, so both read the same prompt.
"""

from __future__ import annotations

import codecs
import random
from collections.abc import Generator
from pathlib import Path
from typing import Any

import gguf
from transformers import PreTrainedTokenizerBase

from forumtune.chat.engine import Engine, Generation
from forumtune.chat.errors import ChatError, GenerationError
from forumtune.decoding import numpy_answer_penalty

INSTALL_HINT = (
    "chat.source=gguf needs llama.cpp's Python bindings: install llama-cpp-python into the venv "
    "(`.venv/bin/pip install llama-cpp-python`; it compiles llama.cpp, 10-20 minutes on 2 cores; add "
    'CMAKE_ARGS="-DGGML_CUDA=on" for an NVIDIA GPU), or chat with chat.source=merged or adapter instead.'
)
# Without a set context, llama.cpp would reserve its cache for the model's whole trained context (32k for
# Mistral 7B: gigabytes); 4096 tokens, or the trained context where it is shorter, are plenty for a chat.
DEFAULT_GGUF_CONTEXT_TOKENS = 4096


def load_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as error:
        raise ChatError(INSTALL_HINT) from error
    return llama_cpp


def trained_context_tokens(gguf_path: Path) -> int:
    """The context length the model was trained with, from the GGUF header."""
    fields = gguf.GGUFReader(gguf_path).fields
    arch = fields["general.architecture"].contents()
    length = fields.get(f"{arch}.context_length")
    return int(length.contents()) if length is not None else DEFAULT_GGUF_CONTEXT_TOKENS


class GgufEngine(Engine):
    """Generates token by token with llama.cpp on the calling thread, checking for cancellation each step."""

    def __init__(
        self,
        gguf_path: Path,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_context_tokens: int | None = None,
        gpu_layers: int = -1,
        threads: int | None = None,
    ) -> None:
        if not gguf_path.is_file():  # before asking for llama.cpp: without the file it would not help
            raise ChatError(
                f"no GGUF file at {gguf_path}: run `forumtune export` first, or use chat.source=merged"
            )
        llama_cpp = load_llama_cpp()
        try:
            self.llama = llama_cpp.Llama(
                model_path=str(gguf_path),
                n_ctx=max_context_tokens
                or min(DEFAULT_GGUF_CONTEXT_TOKENS, trained_context_tokens(gguf_path)),
                n_gpu_layers=gpu_layers,
                n_threads=threads,
                verbose=False,
            )
        except (ValueError, RuntimeError) as error:
            raise ChatError(
                f"llama.cpp could not load {gguf_path}: {error}; re-run `forumtune export`."
            ) from error
        end_ids = {self.llama.token_eos(), tokenizer.eos_token_id} - {None, -1}
        super().__init__(self.llama, tokenizer, max_context_tokens=self.llama.n_ctx(), end_token_ids=end_ids)

    def produce(self, generation: Generation) -> Generator[str, None, None]:
        if not self.acquire_model(generation.cancel):
            return
        try:
            yield from self._tokens_as_text(generation)
        finally:
            self.release_model()

    def _tokens_as_text(self, generation: Generation) -> Generator[str, None, None]:
        settings = generation.settings
        # llama.cpp keeps the last seed it was given: a request without one must not reuse the previous one.
        self.llama.set_seed(settings.seed if settings.seed is not None else random.getrandbits(31))
        if settings.seed is not None:
            # Reusing the cached prompt prefix changes the logits by rounding, enough to change a sampled
            # token; a seeded request gives up that speed-up to be reproducible.
            self.llama.reset()
        # llama.cpp's own top_k, min_p and repeat penalty off: chat.temperature, top_p and repetition_penalty
        # decide, the penalty on the answer's tokens as with transformers (forumtune.decoding says why).
        penalty = (
            None
            if settings.repetition_penalty == 1.0
            else [numpy_answer_penalty(settings.repetition_penalty, generation.prompt_tokens)]
        )
        tokens = self.llama.generate(
            generation.prompt_ids,
            temp=settings.temperature,
            top_p=settings.top_p,
            top_k=0,
            min_p=0.0,
            repeat_penalty=1.0,
            logits_processor=penalty,
        )
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            for token in tokens:
                generation.completion_tokens += 1
                if token in self.end_token_ids:
                    generation.ended_by_end_token = True
                    break
                text = utf8.decode(self.llama.detokenize([token]))
                if text:
                    yield text
                if generation.completion_tokens >= settings.max_new_tokens or generation.cancel.is_set():
                    break
        except (RuntimeError, ValueError, OSError) as error:
            raise GenerationError(
                f"llama.cpp failed while generating ({error}); check the GGUF file."
            ) from error
        finally:
            tokens.close()
        if rest := utf8.decode(b"", final=True):
            yield rest
