"""What every chat engine shares: prompts from the chat template, history trimming, and one reply at a time.

An engine turns messages into token ids with the Hugging Face tokenizer's chat template, checks they fit
the context, and hands a Generation to the caller. The model behind it (transformers or a GGUF file
through llama.cpp) lives in a subclass that only has to produce text pieces for one Generation.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import jinja2
from transformers import PreTrainedTokenizerBase

from forumtune.chat.errors import ChatError, ContextTooLongError
from forumtune.chat.stopping import StopScanner
from forumtune.config import REPETITION_PENALTY

Message = dict[str, str]
FinishReason = Literal["stop", "length", "cancelled"]

LOCK_POLL_SECONDS = 0.05

_model_locks: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_model_locks_guard = threading.Lock()


def generation_lock(model: Any) -> threading.Lock:
    """The lock shared by every engine over this model object, so only one of them generates at a time."""
    with _model_locks_guard:
        return _model_locks.setdefault(model, threading.Lock())


@dataclass(frozen=True)
class SamplingSettings:
    max_new_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int | None = None
    # Divides the logits of tokens already in the conversation: small models loop without it (1: off).
    repetition_penalty: float = REPETITION_PENALTY

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ChatError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}.")
        if self.temperature < 0:
            raise ChatError(f"temperature must be 0 (greedy) or positive, got {self.temperature}.")
        if not 0 < self.top_p <= 1:
            raise ChatError(f"top_p must be in (0, 1], got {self.top_p}.")
        if self.repetition_penalty < 1:
            raise ChatError(f"repetition_penalty must be 1 (off) or more, got {self.repetition_penalty}.")


class Generation:
    """One reply: iterate it once for its text pieces; the token counts and finish_reason are final after.

    The engine's produce() fills in completion_tokens and ended_by_end_token while it runs.
    """

    def __init__(
        self,
        engine: Engine,
        prompt_ids: list[int],
        settings: SamplingSettings,
        stop: Sequence[str],
        cancel: threading.Event | None,
    ) -> None:
        self.engine = engine
        self.prompt_ids = prompt_ids
        self.settings = settings
        self.stop = [text for text in stop if text]
        self.cancel = cancel or threading.Event()
        self.prompt_tokens = len(prompt_ids)
        self.completion_tokens = 0
        self.ended_by_end_token = False
        self.finish_reason: FinishReason | None = None
        self._started = False

    def __iter__(self) -> Generator[str, None, None]:
        if self._started:
            raise ChatError(
                "A Generation can be iterated only once; call engine.generate again for a new reply."
            )
        self._started = True
        return self._pieces()

    def _pieces(self) -> Generator[str, None, None]:
        scanner = StopScanner(self.stop)
        produced = self.engine.produce(self)
        try:
            for piece in produced:
                released = scanner.feed(piece)
                if released:
                    yield released
                if scanner.stopped:
                    break
            rest = scanner.flush()
            if rest:
                yield rest
        finally:
            produced.close()
        self.finish_reason = self._finish_reason(scanner.stopped)

    def _finish_reason(self, hit_stop_string: bool) -> FinishReason:
        if hit_stop_string or self.ended_by_end_token:
            return "stop"
        if self.completion_tokens >= self.settings.max_new_tokens:
            return "length"
        return "cancelled" if self.cancel.is_set() else "stop"


class Engine:
    """A chat model behind the tokenizer's chat template; runs one generation at a time per model."""

    def __init__(
        self,
        model: Any,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_context_tokens: int,
        end_token_ids: Sequence[int],
    ) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ChatError(
                "The tokenizer has no chat_template. Load the tokenizer saved with the fine-tuned model, "
                "or set build.chat_template to one of the named templates."
            )
        self.tokenizer = tokenizer
        self.max_context_tokens = max_context_tokens
        self.end_token_ids = sorted(set(end_token_ids))
        self._model_lock = generation_lock(model)
        self._tokenizer_lock = threading.Lock()

    def produce(self, generation: Generation) -> Generator[str, None, None]:
        """Text pieces of the raw reply; sets generation.completion_tokens and ended_by_end_token."""
        raise NotImplementedError

    def is_busy(self) -> bool:
        return self._model_lock.locked()

    def prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        """Token ids of the templated conversation, ending with the assistant's turn opener."""
        _check_messages(messages)
        try:
            with self._tokenizer_lock:
                encoded = self.tokenizer.apply_chat_template(
                    [dict(message) for message in messages],
                    add_generation_prompt=True,
                    tokenize=True,
                    return_dict=True,
                    sanitize_control_tokens=True,  # control tokens typed by users are encoded as plain text
                )
        except jinja2.TemplateError as error:
            raise ChatError(
                f"The chat template rejected the messages: {error}. "
                "Check the roles (most templates want user and assistant turns to alternate)."
            ) from error
        return list(encoded["input_ids"])

    def text_ids(self, prompt: str) -> list[int]:
        """Token ids of plain text (no chat template), with the tokenizer's usual leading special tokens."""
        with self._tokenizer_lock:
            return list(self.tokenizer(prompt)["input_ids"])

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return len(self.prompt_ids(messages))

    def trim_history(self, messages: Sequence[Message], max_new_tokens: int) -> list[Message]:
        """The system messages plus the newest turns, from a user message on, that leave room to reply."""
        system, turns = _split_leading_system(messages)
        starts = [index for index, message in enumerate(turns) if message["role"] == "user"]
        if not starts:
            raise ChatError("The conversation has no user message; add one before asking for a reply.")
        budget = self.max_context_tokens - max_new_tokens
        kept: list[Message] | None = None
        for start in reversed(starts):
            candidate = system + turns[start:]
            if self.count_tokens(candidate) > budget:
                break
            kept = candidate
        if kept is None:
            needed = self.count_tokens(system + turns[starts[-1] :])
            raise ContextTooLongError(
                f"The last user message{' with the system prompt' if system else ''} takes {needed} tokens; "
                f"with max_new_tokens={max_new_tokens} that exceeds the {self.max_context_tokens}-token "
                "context. Shorten the message or the system prompt, or lower max_new_tokens."
            )
        return kept

    def generate(
        self,
        messages: Sequence[Message],
        max_new_tokens: int = 256,
        temperature: float = 0.7,
        top_p: float = 0.95,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
        cancel: threading.Event | None = None,
        repetition_penalty: float = REPETITION_PENALTY,
    ) -> Generation:
        """Prepare one reply; iterating the result runs the model. ContextTooLongError if it cannot fit."""
        settings = SamplingSettings(max_new_tokens, temperature, top_p, seed, repetition_penalty)
        return self.generation_for_ids(self.prompt_ids(messages), settings, stop, cancel)

    def generate_from_text(
        self,
        prompt: str,
        max_new_tokens: int = 256,
        temperature: float = 0.7,
        top_p: float = 0.95,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
        cancel: threading.Event | None = None,
        repetition_penalty: float = REPETITION_PENALTY,
    ) -> Generation:
        """Prepare a continuation of plain text, without the chat template."""
        settings = SamplingSettings(max_new_tokens, temperature, top_p, seed, repetition_penalty)
        return self.generation_for_ids(self.text_ids(prompt), settings, stop, cancel)

    def generation_for_ids(
        self,
        prompt_ids: list[int],
        settings: SamplingSettings,
        stop: Sequence[str] | None,
        cancel: threading.Event | None,
    ) -> Generation:
        """Prepare a reply to prompt token ids made by prompt_ids() or text_ids()."""
        if len(prompt_ids) + settings.max_new_tokens > self.max_context_tokens:
            raise ContextTooLongError(
                f"The prompt takes {len(prompt_ids)} tokens; with max_new_tokens={settings.max_new_tokens} it "
                f"exceeds the {self.max_context_tokens}-token context. Drop old turns (trim_history) or ask "
                "for fewer tokens."
            )
        return Generation(self, prompt_ids, settings, stop or [], cancel)

    def stream(self, messages: Sequence[Message], **options: Any) -> Iterator[str]:
        """Text pieces of the reply as they are generated; the stop string that ends it is not included."""
        return iter(self.generate(messages, **options))

    def complete(self, messages: Sequence[Message], **options: Any) -> tuple[str, FinishReason, int, int]:
        """The whole reply as (text, finish_reason, prompt_tokens, completion_tokens)."""
        generation = self.generate(messages, **options)
        text = "".join(generation)
        assert generation.finish_reason is not None
        return text, generation.finish_reason, generation.prompt_tokens, generation.completion_tokens

    def acquire_model(self, *give_up: threading.Event) -> bool:
        """Wait for the model; False (without the lock) if any give_up event is set first."""
        while not self._model_lock.acquire(timeout=LOCK_POLL_SECONDS):
            if any(event.is_set() for event in give_up):
                return False
        if any(event.is_set() for event in give_up):
            self._model_lock.release()
            return False
        return True

    def release_model(self) -> None:
        self._model_lock.release()


def _check_messages(messages: Sequence[Message]) -> None:
    if not messages:
        raise ChatError("No messages given; send at least one user message.")
    for position, message in enumerate(messages):
        if not isinstance(message.get("role"), str) or not isinstance(message.get("content"), str):
            raise ChatError(f"Message {position} needs a string 'role' and a string 'content'.")


def _split_leading_system(messages: Sequence[Message]) -> tuple[list[Message], list[Message]]:
    count = 0
    while count < len(messages) and messages[count]["role"] == "system":
        count += 1
    return list(messages[:count]), list(messages[count:])
