"""Render conversations with the chat template, tokenize them, and mask prompt tokens from the loss.

Each assistant turn's tokens are found as the difference between the rendering up to and including
that turn and the rendering of the turns before it plus the generation prompt, so any template
whose renderings are prefixes of each other works, whatever its markup. All renderings of a batch
of conversations are tokenized in one call, which the fast tokenizer spreads over every core.
"""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import TemplateError
from transformers import PreTrainedTokenizerBase
from transformers.utils.chat_template_utils import _compile_jinja_template

from forumtune.chat_templates import NAMED_TEMPLATES
from forumtune.errors import BuildError
from forumtune.records import IGNORE_INDEX

Message = dict[str, str]
NAMED_TEMPLATE_ADVICE = f"set build.chat_template to one of {', '.join(NAMED_TEMPLATES)}"


@dataclass(frozen=True)
class EncodedExample:
    input_ids: list[int]
    labels: list[int]
    answer_spans: tuple[tuple[int, int], ...] = ()  # [start, end) of each answer's tokens

    @property
    def answer_tokens(self) -> list[int]:
        return [end - start for start, end in self.answer_spans]

    @property
    def trained_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)

    def cut(self, max_tokens: int) -> EncodedExample | None:
        """The longest prefix that ends at the end of an answer and fits, or None when none fits."""
        if len(self.input_ids) <= max_tokens:
            return self
        spans = tuple(span for span in self.answer_spans if span[1] <= max_tokens)
        if not spans:
            return None
        end = spans[-1][1]
        return EncodedExample(self.input_ids[:end], self.labels[:end], spans)


class TemplateRenderer:
    """The chat template compiled once, in the same sandboxed jinja environment transformers uses.

    apply_chat_template copies and checks every conversation on each call, which costs more than the
    rendering itself; a build renders each conversation twice per answer, so it renders directly.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, template: str | None):
        self.source = tokenizer.get_chat_template(template)
        self.variables = dict(tokenizer.special_tokens_map)
        self.compiled = _compile_jinja_template(self.source)

    def __call__(self, messages: list[Message], generation_prompt: bool) -> str:
        try:
            return self.compiled.render(
                messages=messages, add_generation_prompt=generation_prompt, **self.variables
            )
        except TemplateError as error:
            raise BuildError(
                f"the chat template failed on a conversation ({error}); {NAMED_TEMPLATE_ADVICE}"
            ) from None


def adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the model expects a BOS: its tokenizer puts one in front of plain text."""
    bos = tokenizer.bos_token_id
    return bos is not None and bos != tokenizer.eos_token_id and tokenizer("a")["input_ids"][:1] == [bos]


# Four messages with no markup of their own: what a template writes around them is all it writes.
PROBE = [
    {"role": "user", "content": "q1"},
    {"role": "assistant", "content": "a1"},
    {"role": "user", "content": "q2"},
    {"role": "assistant", "content": "a2"},
]


def bos_opens_turns(tokenizer: PreTrainedTokenizerBase, render: TemplateRenderer) -> bool:
    """Whether the tokenizer's "BOS" is really the token that opens every turn (SmolLM2 and other ChatML
    models name `<|im_start|>` as bos_token): the tokenizer does not add it, and the template writes it
    before every message. Then it appears once per turn, and "one BOS at the start" is the wrong rule."""
    bos = tokenizer.bos_token
    if not bos or adds_bos(tokenizer):
        return False
    try:
        rendered = render(PROBE, generation_prompt=False)
    except BuildError:
        return False
    return rendered.count(bos) >= len(PROBE)


def render_turns(render: TemplateRenderer, messages: list[Message], bos_text: str) -> list[str]:
    """For each assistant turn: the rendering before it (with the generation prompt), then through it.

    Templates that leave BOS to the tokenizer (Phi-3, some Llama-3 variants) get it written here,
    because tokenizing with add_special_tokens would double it for those that write it themselves.
    """
    texts = []
    for index, message in enumerate(messages):
        if message["role"] == "assistant":
            texts.append(render(messages[:index], generation_prompt=True))
            texts.append(render(messages[: index + 1], generation_prompt=False))
    if not texts:
        raise BuildError("a conversation without an assistant turn has nothing to learn")
    if bos_text and not texts[0].startswith(bos_text):
        texts = [bos_text + text for text in texts]
    return texts


def token_ids(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return tokenizer(texts, add_special_tokens=False)["input_ids"]
    # The Rust tokenizer directly: the same ids as tokenizer(texts), without building Python dicts of them.
    return [encoding.ids for encoding in backend.encode_batch(texts, add_special_tokens=False)]


def assemble(turn_ids: list[list[int]], train_on_inputs: bool) -> EncodedExample:
    input_ids: list[int] = []
    labels: list[int] = []
    answer_spans: list[tuple[int, int]] = []
    for prompt_ids, full_ids in zip(turn_ids[::2], turn_ids[1::2]):
        if prompt_ids[: len(input_ids)] != input_ids or full_ids[: len(prompt_ids)] != prompt_ids:
            raise BuildError(
                "the chat template does not render conversations as prefixes of each other, so "
                f"prompt tokens cannot be masked; {NAMED_TEMPLATE_ADVICE}"
            )
        new_prompt = prompt_ids[len(input_ids) :]
        labels += (new_prompt if train_on_inputs else [IGNORE_INDEX] * len(new_prompt)) + full_ids[
            len(prompt_ids) :
        ]
        input_ids = full_ids
        answer_spans.append((len(prompt_ids), len(full_ids)))
    return EncodedExample(input_ids=input_ids, labels=labels, answer_spans=tuple(answer_spans))


def encode_conversations(
    tokenizer: PreTrainedTokenizerBase,
    conversations: list[list[Message]],
    *,
    template: str | None = None,
    train_on_inputs: bool = False,
) -> list[EncodedExample]:
    """Token ids and labels of each conversation; only assistant turns count unless train_on_inputs."""
    render = TemplateRenderer(tokenizer, template)
    expect_bos = adds_bos(tokenizer)
    bos_text = tokenizer.bos_token if expect_bos else ""
    turn_marker = bos_opens_turns(tokenizer, render)
    rendered = [render_turns(render, messages, bos_text) for messages in conversations]
    flat = [text for texts in rendered for text in texts]
    flat_ids = token_ids(tokenizer, flat)
    examples, start = [], 0
    for texts in rendered:
        examples.append(assemble(flat_ids[start : start + len(texts)], train_on_inputs))
        start += len(texts)
    for example in examples:
        check_special_tokens(tokenizer, example, expect_bos=expect_bos, bos_opens_turns=turn_marker)
    return examples


def encode_conversation(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[Message],
    *,
    template: str | None = None,
    train_on_inputs: bool = False,
) -> EncodedExample:
    return encode_conversations(tokenizer, [messages], template=template, train_on_inputs=train_on_inputs)[0]


def check_special_tokens(
    tokenizer: PreTrainedTokenizerBase,
    example: EncodedExample,
    *,
    expect_bos: bool | None = None,
    bos_opens_turns: bool = False,
) -> None:
    """Exactly one BOS at the start (when the model has one that is not a turn opener) and an EOS in every
    answer."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    expect_bos = adds_bos(tokenizer) if expect_bos is None else expect_bos
    has_bos = (
        bos is not None and bos != eos and not bos_opens_turns and (expect_bos or bos in example.input_ids)
    )
    if has_bos and (example.input_ids.count(bos) != 1 or example.input_ids[0] != bos):
        raise BuildError(
            f"expected exactly one BOS token at the start, got {example.input_ids.count(bos)}; a "
            f"post may contain {tokenizer.bos_token!r}, or the template writes it twice: "
            f"{NAMED_TEMPLATE_ADVICE}"
        )
    for start, end in example.answer_spans:
        if eos is not None and eos not in example.input_ids[start:end]:
            raise BuildError(
                f"the chat template does not end each answer with the EOS token {tokenizer.eos_token!r}, "
                f"so the model would never learn to stop; {NAMED_TEMPLATE_ADVICE}"
            )
