"""Render a conversation with the chat template, tokenize it, and mask prompt tokens from the loss."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from forumtune.errors import BuildError

IGNORE_INDEX = -100
Message = dict[str, str]


@dataclass(frozen=True)
class EncodedExample:
    input_ids: list[int]
    labels: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def _render_ids(tokenizer: PreTrainedTokenizerBase, messages: list[Message], template: str | None,
                generation_prompt: bool) -> list[int]:
    text = tokenizer.apply_chat_template(
        messages, chat_template=template, tokenize=False, add_generation_prompt=generation_prompt
    )
    # The template writes BOS itself; letting the tokenizer add one too would double it.
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_conversation(tokenizer: PreTrainedTokenizerBase, messages: list[Message], *,
                        template: str | None = None, train_on_inputs: bool = False) -> EncodedExample:
    """Token ids and labels; only assistant turns count in the loss unless train_on_inputs.

    Each assistant turn's tokens are found as the difference between the rendering up to and
    including that turn and the rendering of the turns before it plus the generation prompt, so any
    template whose renderings are prefixes of each other works, whatever its markup.
    """
    input_ids: list[int] = []
    labels: list[int] = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt_ids = _render_ids(tokenizer, messages[:index], template, generation_prompt=True)
        full_ids = _render_ids(tokenizer, messages[: index + 1], template, generation_prompt=False)
        if prompt_ids[: len(input_ids)] != input_ids or full_ids[: len(prompt_ids)] != prompt_ids:
            raise BuildError(
                "the chat template does not render conversations as prefixes of each other, so prompt "
                "tokens cannot be masked; set build.chat_template to one of the named templates"
            )
        new_prompt = prompt_ids[len(input_ids):]
        answer = full_ids[len(prompt_ids):]
        input_ids = full_ids
        labels += (new_prompt if train_on_inputs else [IGNORE_INDEX] * len(new_prompt)) + answer
    if not input_ids:
        raise BuildError("a conversation without an assistant turn has nothing to learn")
    return EncodedExample(input_ids=input_ids, labels=labels)


def check_special_tokens(tokenizer: PreTrainedTokenizerBase, example: EncodedExample) -> None:
    """Exactly one BOS at the start (when the model has one) and every answer ending in EOS."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if bos is not None and (example.input_ids.count(bos) != 1 or example.input_ids[0] != bos):
        raise BuildError(f"expected exactly one BOS token at the start, got {example.input_ids.count(bos)}")
    if eos is not None and eos not in [label for label in example.labels if label != IGNORE_INDEX]:
        raise BuildError("the answer does not end with the EOS token: the model would never learn to stop")
