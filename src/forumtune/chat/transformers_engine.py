"""A chat engine over a transformers model: the fine-tune (adapter or merged) or its base."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Generator
from typing import Any

import torch
from transformers import (
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)

from forumtune import cpu_layout
from forumtune.chat.engine import Engine, Generation
from forumtune.chat.errors import GenerationError
from forumtune.chat.stopping import EventStoppingCriteria, StopTextCriteria
from forumtune.decoding import AnswerRepetitionPenalty

DEFAULT_CONTEXT_TOKENS = 2048


class TransformersEngine(Engine):
    """Generates with model.generate on a background thread, streaming text as it comes.

    With without_adapter=True over a PEFT model it answers as the base model (the adapter switched off
    for each reply), so base and fine-tuned can be compared without loading the base twice.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_context_tokens: int | None = None,
        without_adapter: bool = False,
    ) -> None:
        super().__init__(
            model,
            tokenizer,
            max_context_tokens=max_context_tokens or _model_context_tokens(model),
            end_token_ids=_end_token_ids(model, tokenizer),
        )
        self.model = model
        self.model.eval()
        cpu_layout.use_packed_layout_for_generation(self.model)  # a chat model only generates
        self.without_adapter = without_adapter
        pad_token_id = tokenizer.pad_token_id
        self.pad_token_id = pad_token_id if pad_token_id is not None else next(iter(self.end_token_ids), None)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def produce(self, generation: Generation) -> Generator[str, None, None]:
        halt = threading.Event()
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        outcome: dict[str, Any] = {}
        worker = threading.Thread(
            target=self._generate_in_background,
            args=(generation, streamer, halt, outcome),
            name="chat-generate",
            daemon=True,
        )
        worker.start()
        try:
            yield from streamer
        finally:
            halt.set()
            worker.join()
            self._record_tokens(generation, outcome.get("sequences"))
        if "error" in outcome:
            error = outcome["error"]
            raise GenerationError(
                f"Generation failed ({type(error).__name__}: {error}); check the model, device and memory."
            ) from error

    def _generate_in_background(
        self,
        generation: Generation,
        streamer: TextIteratorStreamer,
        halt: threading.Event,
        outcome: dict[str, Any],
    ) -> None:
        try:
            if self.acquire_model(halt, generation.cancel):
                try:
                    outcome["sequences"] = self._run_model(generation, streamer, halt)
                finally:
                    self.release_model()
        except Exception as error:  # noqa: BLE001 - handed to the consuming thread, which re-raises it
            outcome["error"] = error
        finally:
            if "sequences" not in outcome:
                streamer.end()

    def _run_model(
        self, generation: Generation, streamer: TextIteratorStreamer, halt: threading.Event
    ) -> torch.Tensor:
        input_ids = torch.tensor([generation.prompt_ids], device=self.device)
        criteria: list[StoppingCriteria] = [EventStoppingCriteria(halt, generation.cancel)]
        if generation.stop:
            criteria.append(StopTextCriteria(self.tokenizer, generation.stop, generation.prompt_tokens))
        settings = generation.settings
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        sampling = (
            {"do_sample": False}
            if settings.temperature == 0
            else {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p}
        )
        if settings.repetition_penalty != 1.0:
            sampling["logits_processor"] = LogitsProcessorList(
                [AnswerRepetitionPenalty(settings.repetition_penalty, input_ids.shape[1])]
            )
        adapter_off = self.model.disable_adapter() if self.without_adapter else contextlib.nullcontext()
        with adapter_off, torch.inference_mode():
            return self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=settings.max_new_tokens,
                streamer=streamer,
                stopping_criteria=StoppingCriteriaList(criteria),
                eos_token_id=self.end_token_ids or None,
                pad_token_id=self.pad_token_id,
                **sampling,
            )

    def _record_tokens(self, generation: Generation, sequences: Any) -> None:
        sequences = getattr(sequences, "sequences", sequences)
        new_ids = [] if sequences is None else sequences[0, generation.prompt_tokens :].tolist()
        generation.completion_tokens = len(new_ids)
        generation.ended_by_end_token = bool(new_ids) and new_ids[-1] in self.end_token_ids


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
