"""Answers of the base and the fine-tuned model to held-out questions, batched, greedy or sampled."""

from __future__ import annotations

from typing import Any

import torch
from peft import PeftModel
from transformers import PreTrainedTokenizerBase


def prompt_messages(record: dict[str, Any]) -> list[dict[str, str]]:
    """The conversation up to (not including) its last answer."""
    messages = record["messages"]
    last_answer = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last_answer]


@torch.no_grad()
def generate_answers(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, prompts: list[list[dict[str, str]]],
                     *, max_new_tokens: int, temperature: float, seed: int, batch_size: int = 4) -> list[dict[str, Any]]:
    """Text of each answer with whether it ended by itself (EOS) or hit the token limit."""
    device = next(model.parameters()).device
    tokenizer.padding_side = "left"
    answers: list[dict[str, Any]] = []
    for start in range(0, len(prompts), batch_size):
        texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
                 for p in prompts[start: start + batch_size]]
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        torch.manual_seed(seed + start)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": 0.95} if temperature > 0 else {"do_sample": False}
        output = model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                eos_token_id=tokenizer.eos_token_id, **sampling)
        for row in output[:, batch["input_ids"].shape[1]:]:
            ids = row.tolist()
            ended = tokenizer.eos_token_id in ids
            if ended:
                ids = ids[: ids.index(tokenizer.eos_token_id)]
            answers.append({"text": tokenizer.decode(ids, skip_special_tokens=True).strip(), "ended": ended,
                            "tokens": len(ids)})
    tokenizer.padding_side = "right"
    return answers


def generate_base_and_tuned(model: PeftModel, tokenizer: PreTrainedTokenizerBase, prompts: list[list[dict[str, str]]],
                            **settings: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with model.disable_adapter():
        base = generate_answers(model, tokenizer, prompts, **settings)
    tuned = generate_answers(model, tokenizer, prompts, **settings)
    return base, tuned
