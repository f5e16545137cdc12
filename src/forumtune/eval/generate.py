"""Answers of the base and the fine-tuned model to held-out questions, batched, greedy or sampled."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from transformers import LogitsProcessorList, PreTrainedTokenizerBase

from forumtune import cpu_layout
from forumtune.config import Config
from forumtune.decoding import AnswerRepetitionPenalty
from forumtune.records import ModelAnswer


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int
    temperature: float  # 0 means greedy
    top_p: float
    seed: int
    batch_size: int
    repetition_penalty: float = 1.0  # 1 means off
    no_repeat_ngram_size: int = 0  # 0 means off

    @property
    def is_plain_greedy(self) -> bool:
        return self.temperature == 0 and self.repetition_penalty == 1.0 and self.no_repeat_ngram_size == 0

    def plain_greedy(self) -> GenerationSettings:
        return replace(self, temperature=0.0, repetition_penalty=1.0, no_repeat_ngram_size=0)

    def decoding(self) -> str:
        parts = [
            "greedy decoding"
            if self.temperature == 0
            else f"sampling at temperature {self.temperature}, top-p {self.top_p}"
        ]
        if self.repetition_penalty != 1.0:
            parts.append(f"repetition penalty {self.repetition_penalty} on the answer's tokens")
        if self.no_repeat_ngram_size:
            parts.append(f"no repeated {self.no_repeat_ngram_size}-token runs")
        return ", ".join(parts)

    def describe(self) -> str:
        return (
            f"{self.decoding()}, at most {self.max_new_tokens} new tokens, seed {self.seed}, "
            f"batches of {self.batch_size}; base and fine-tuned get the same prompts and seeds"
        )

    def generate_kwargs(self, prompt_length: int) -> dict[str, Any]:
        """model.generate's decoding arguments for these settings and prompts of `prompt_length` tokens."""
        kwargs: dict[str, Any] = (
            {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p}
            if self.temperature > 0
            else {"do_sample": False}
        )
        if self.repetition_penalty != 1.0:
            kwargs["logits_processor"] = LogitsProcessorList(
                [AnswerRepetitionPenalty(self.repetition_penalty, prompt_length)]
            )
        if self.no_repeat_ngram_size:
            kwargs["no_repeat_ngram_size"] = self.no_repeat_ngram_size
        return kwargs


def generation_settings(config: Config) -> GenerationSettings:
    """How eval answers: the eval section's decoding, seeded by the run's seed."""
    settings = config.eval
    return GenerationSettings(
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
        seed=config.seed,
        batch_size=settings.batch_size,
        repetition_penalty=settings.repetition_penalty,
        no_repeat_ngram_size=settings.no_repeat_ngram_size,
    )


def prompt_messages(record: dict[str, Any]) -> list[dict[str, str]]:
    """The conversation up to (not including) its last answer."""
    messages = record["messages"]
    last_answer = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last_answer]


def stop_token_ids(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """EOS of the tokenizer plus any the model's generation config adds (e.g. <|im_end|>)."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    configured = configured if isinstance(configured, list) else [configured]
    return sorted({tokenizer.eos_token_id, *configured} - {None})


def _decode_answer(row: list[int], stop_ids: list[int], tokenizer: PreTrainedTokenizerBase) -> ModelAnswer:
    stop_at = next((i for i, token in enumerate(row) if token in stop_ids), None)
    ids = row if stop_at is None else row[:stop_at]
    return ModelAnswer(
        text=tokenizer.decode(ids, skip_special_tokens=True).strip(),
        raw=tokenizer.decode(ids, skip_special_tokens=False),
        ended_with_eos=stop_at is not None,
        tokens=len(ids),
    )


@torch.no_grad()
def generate_answers(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[list[dict[str, str]]],
    settings: GenerationSettings,
) -> list[ModelAnswer]:
    """Each answer's text (special tokens dropped), raw text (kept), whether it ended by itself, its length
    (no flags or scores yet).
    From here on `model` is for generation only: its 4-bit weights may be packed for the CPU."""
    cpu_layout.use_packed_layout_for_generation(model)
    device = next(model.parameters()).device
    stop_ids = stop_token_ids(model, tokenizer)
    answers: list[ModelAnswer] = []
    previous_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        for start in range(0, len(prompts), settings.batch_size):
            texts = [
                tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
                for p in prompts[start : start + settings.batch_size]
            ]
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            torch.manual_seed(settings.seed + start)
            output = model.generate(
                **batch,
                max_new_tokens=settings.max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=stop_ids,
                **settings.generate_kwargs(batch["input_ids"].shape[1]),
            )
            answers += [
                _decode_answer(row.tolist(), stop_ids, tokenizer)
                for row in output[:, batch["input_ids"].shape[1] :]
            ]
    finally:
        tokenizer.padding_side = previous_side
    return answers
