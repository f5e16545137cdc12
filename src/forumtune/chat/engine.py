"""Reply generation over a chat model: token counting, history trimming, streamed and whole replies."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import jinja2
import torch
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)

from forumtune.chat.errors import ChatError, ContextTooLongError, GenerationError

Message = dict[str, str]
FinishReason = Literal["stop", "length", "cancelled"]

DEFAULT_CONTEXT_TOKENS = 2048
LOCK_POLL_SECONDS = 0.05

_model_locks: weakref.WeakKeyDictionary[torch.nn.Module, threading.Lock] = weakref.WeakKeyDictionary()
_model_locks_guard = threading.Lock()


def generation_lock(model: torch.nn.Module) -> threading.Lock:
    """The lock shared by every engine over this model object, so only one of them generates at a time."""
    with _model_locks_guard:
        return _model_locks.setdefault(model, threading.Lock())


@dataclass(frozen=True)
class SamplingSettings:
    max_new_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ChatError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}.")
        if self.temperature < 0:
            raise ChatError(f"temperature must be 0 (greedy) or positive, got {self.temperature}.")
        if not 0 < self.top_p <= 1:
            raise ChatError(f"top_p must be in (0, 1], got {self.top_p}.")

    def generate_kwargs(self) -> dict[str, Any]:
        if self.temperature == 0:
            return {"do_sample": False}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p}


def _all_rows(input_ids: torch.LongTensor, done: bool) -> torch.BoolTensor:
    return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class EventStoppingCriteria(StoppingCriteria):
    """Ends generation at the next token once any of the events is set."""

    def __init__(self, *events: threading.Event) -> None:
        self.events = events

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        return _all_rows(input_ids, any(event.is_set() for event in self.events))


class StopTextCriteria(StoppingCriteria):
    """Ends generation once the newly generated text contains one of the stop strings."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stop: Sequence[str], prompt_tokens: int) -> None:
        self.tokenizer = tokenizer
        self.stop = list(stop)
        self.prompt_tokens = prompt_tokens
        # A character takes at most 4 bytes and a token at least 1, so this tail holds any whole stop string.
        self.tail_tokens = 4 * max(len(text) for text in self.stop) + 2

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        tail = input_ids[0, self.prompt_tokens :][-self.tail_tokens :]
        text = self.tokenizer.decode(tail, skip_special_tokens=True)
        return _all_rows(input_ids, any(stop in text for stop in self.stop))


class StopScanner:
    """Passes streamed text on, holding back what may start a stop string and cutting at the first one."""

    def __init__(self, stop: Sequence[str]) -> None:
        self.stop = [text for text in stop if text]
        self.pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        self.pending += text
        cuts = [self.pending.find(stop) for stop in self.stop if stop in self.pending]
        if cuts:
            released, self.pending, self.stopped = self.pending[: min(cuts)], "", True
            return released
        held = self._held_length()
        released = self.pending[: len(self.pending) - held]
        self.pending = self.pending[len(self.pending) - held :]
        return released

    def flush(self) -> str:
        released, self.pending = self.pending, ""
        return released

    def _held_length(self) -> int:
        longest = 0
        for stop in self.stop:
            for length in range(min(len(stop) - 1, len(self.pending)), longest, -1):
                if self.pending.endswith(stop[:length]):
                    longest = length
                    break
        return longest


class Generation:
    """One reply: iterate it once for its text pieces; the token counts and finish_reason are final after."""

    def __init__(
        self,
        engine: ChatEngine,
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
        halt = threading.Event()
        streamer = TextIteratorStreamer(self.engine.tokenizer, skip_prompt=True, skip_special_tokens=True)
        outcome: dict[str, Any] = {}
        worker = threading.Thread(
            target=self._generate_in_background,
            args=(streamer, halt, outcome),
            name="chat-generate",
            daemon=True,
        )
        worker.start()
        scanner = StopScanner(self.stop)
        try:
            for piece in streamer:
                released = scanner.feed(piece)
                if released:
                    yield released
                if scanner.stopped:
                    break
            rest = scanner.flush()
            if rest:
                yield rest
        finally:
            halt.set()
            worker.join()
        self._record_outcome(outcome, scanner.stopped)

    def _generate_in_background(
        self, streamer: TextIteratorStreamer, halt: threading.Event, outcome: dict[str, Any]
    ) -> None:
        try:
            if self.engine.acquire_model(halt, self.cancel):
                try:
                    outcome["sequences"] = self._run_model(streamer, halt)
                finally:
                    self.engine.release_model()
        except Exception as error:  # noqa: BLE001 - handed to the consuming thread, which re-raises it
            outcome["error"] = error
        finally:
            if "sequences" not in outcome:
                streamer.end()

    def _run_model(self, streamer: TextIteratorStreamer, halt: threading.Event) -> torch.Tensor:
        engine = self.engine
        input_ids = torch.tensor([self.prompt_ids], device=engine.device)
        criteria: list[StoppingCriteria] = [EventStoppingCriteria(halt, self.cancel)]
        if self.stop:
            criteria.append(StopTextCriteria(engine.tokenizer, self.stop, self.prompt_tokens))
        if self.settings.seed is not None:
            torch.manual_seed(self.settings.seed)
        return engine.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=self.settings.max_new_tokens,
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList(criteria),
            eos_token_id=engine.end_token_ids or None,
            pad_token_id=engine.pad_token_id,
            **self.settings.generate_kwargs(),
        )

    def _record_outcome(self, outcome: dict[str, Any], hit_stop_string: bool) -> None:
        if "error" in outcome:
            error = outcome["error"]
            raise GenerationError(
                f"Generation failed ({type(error).__name__}: {error}); check the model, device and memory."
            ) from error
        sequences = getattr(outcome.get("sequences"), "sequences", outcome.get("sequences"))
        new_ids = [] if sequences is None else sequences[0, self.prompt_tokens :].tolist()
        self.completion_tokens = len(new_ids)
        if hit_stop_string or (new_ids and new_ids[-1] in self.engine.end_token_ids):
            self.finish_reason = "stop"
        elif len(new_ids) >= self.settings.max_new_tokens:
            self.finish_reason = "length"
        elif sequences is None or self.cancel.is_set():
            self.finish_reason = "cancelled"
        else:
            self.finish_reason = "stop"


class ChatEngine:
    """A chat model and its tokenizer; runs one generation at a time."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_context_tokens: int | None = None,
    ) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ChatError(
                "The tokenizer has no chat_template. Load the tokenizer saved with the fine-tuned model, "
                "or set tokenizer.chat_template to a Jinja chat template."
            )
        self.model = model
        self.model.eval()
        self.tokenizer = tokenizer
        self.max_context_tokens = max_context_tokens or _model_context_tokens(model)
        self.end_token_ids = _end_token_ids(model, tokenizer)
        pad_token_id = tokenizer.pad_token_id
        self.pad_token_id = pad_token_id if pad_token_id is not None else next(iter(self.end_token_ids), None)
        self._model_lock = generation_lock(model)
        self._tokenizer_lock = threading.Lock()

    @property
    def device(self) -> torch.device:
        return self.model.device

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
    ) -> Generation:
        """Prepare one reply; iterating the result runs the model. ContextTooLongError if it cannot fit."""
        settings = SamplingSettings(max_new_tokens, temperature, top_p, seed)
        prompt_ids = self.prompt_ids(messages)
        if len(prompt_ids) + max_new_tokens > self.max_context_tokens:
            raise ContextTooLongError(
                f"The prompt takes {len(prompt_ids)} tokens; with max_new_tokens={max_new_tokens} it exceeds "
                f"the {self.max_context_tokens}-token context. Drop old turns (trim_history) or ask for "
                "fewer tokens."
            )
        return Generation(self, prompt_ids, settings, stop or [], cancel)

    def stream(
        self,
        messages: Sequence[Message],
        max_new_tokens: int = 256,
        temperature: float = 0.7,
        top_p: float = 0.95,
        seed: int | None = None,
        stop: list[str] | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        """Text pieces of the reply as they are generated; the stop string that ends it is not included."""
        return iter(self.generate(messages, max_new_tokens, temperature, top_p, seed, stop, cancel))

    def complete(
        self,
        messages: Sequence[Message],
        max_new_tokens: int = 256,
        temperature: float = 0.7,
        top_p: float = 0.95,
        seed: int | None = None,
        stop: list[str] | None = None,
        cancel: threading.Event | None = None,
    ) -> tuple[str, FinishReason, int, int]:
        """The whole reply as (text, finish_reason, prompt_tokens, completion_tokens)."""
        generation = self.generate(messages, max_new_tokens, temperature, top_p, seed, stop, cancel)
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


def _model_context_tokens(model: PreTrainedModel) -> int:
    return getattr(model.config, "max_position_embeddings", None) or DEFAULT_CONTEXT_TOKENS


def _end_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)
