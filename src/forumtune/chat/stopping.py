"""Where a reply ends: stop strings in the streamed text, and events that halt the model mid-reply."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase, StoppingCriteria


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
