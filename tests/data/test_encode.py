"""For every template, own and named: one BOS, an EOS ending each answer, prompt tokens masked, token by token."""

import pytest

from forumtune.base_model import load_tokenizer
from forumtune.chat_templates import NAMED_TEMPLATES
from forumtune.data.encode import IGNORE_INDEX, encode_conversation
from forumtune.errors import BuildError
from tests.data.family_tokenizers import FAMILIES, save_family_tokenizer

SYSTEM = {"role": "system", "content": "You answer questions from a ski forum."}
TURNS = [
    {"role": "user", "content": "How often should I wax my skis?"},
    {"role": "assistant", "content": "Wax every 3 or 4 days on snow, more in spring slush."},
    {"role": "user", "content": "And with a wax iron?"},
    {"role": "assistant", "content": "Keep it moving, never let it smoke."},
]
ANSWERS = [TURNS[1]["content"], TURNS[3]["content"]]
# What each named template trains on around an answer: the answer, its end-of-turn marker and EOS.
ANSWER_TEXT = {
    "mistral": " {}</s>",
    "llama2": " {} </s>",
    "llama3": "{}<|eot_id|>",
    "chatml": "{}<|im_end|>\n",
    "gemma": "{}<end_of_turn><eos>\n",
    "phi3": "{}<|end|><|endoftext|>\n",
}
# Named templates whose family has no tokenizer here: tests/data/test_real_tokenizers.py checks them on the
# real vocabulary.
ON_REAL_VOCABULARY_ONLY = {"mistral_v3"}
# The families' own templates that train correctly as shipped, and on what conversations.
OWN_TEMPLATE_WORKS = {
    "mistral": "multi",
    "llama2": "single",
    "llama3": "multi",
    "chatml": "multi",
    "phi3": "single",
}


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokenizers")
    return {family: save_family_tokenizer(family, root / family) for family in FAMILIES}


def trained_runs(tokenizer, example) -> list[str]:
    """The decoded text of each maximal run of trained tokens."""
    runs, current = [], []
    for token, label in zip(example.input_ids, example.labels):
        if label != IGNORE_INDEX:
            assert label == token
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    return [tokenizer.decode(run) for run in runs + ([current] if current else [])]


def assert_trains_exactly_the_answers(tokenizer, messages, expected_answer_texts):
    example = encode_conversation(tokenizer, messages)
    bos = tokenizer.bos_token_id
    if tokenizer.bos_token is not None:
        assert example.input_ids.count(bos) == 1 and example.input_ids[0] == bos
    assert trained_runs(tokenizer, example) == expected_answer_texts
    for start, end in example.answer_spans:
        answer = example.input_ids[start:end]
        after_eos = answer[answer.index(tokenizer.eos_token_id) + 1 :]
        assert tokenizer.decode(after_eos).strip() == ""
    # token by token: each turn's prompt, tokenized on its own, is exactly the masked run before its answer
    for index, (start, _) in enumerate(example.answer_spans):
        turn = [m for m in messages if m["role"] != "system"][: 2 * index + 1]
        prompt = tokenizer.apply_chat_template(
            messages[:1] + turn if messages[0]["role"] == "system" else turn,
            tokenize=False,
            add_generation_prompt=True,
        )
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if tokenizer.bos_token and prompt_ids[:1] != [bos] and example.input_ids[:1] == [bos]:
            prompt_ids = [bos] + prompt_ids
        assert example.input_ids[:start] == prompt_ids
        masked_here = example.labels[(example.answer_spans[index - 1][1] if index else 0) : start]
        assert masked_here == [IGNORE_INDEX] * len(masked_here)
    return example


def test_every_named_template_is_tested_on_a_tokenizer_of_its_family():
    assert set(NAMED_TEMPLATES) == set(FAMILIES) | ON_REAL_VOCABULARY_ONLY


@pytest.mark.parametrize("family", sorted(set(NAMED_TEMPLATES) - ON_REAL_VOCABULARY_ONLY))
def test_named_template_on_its_family_tokenizer(family_dirs, family):
    tokenizer = load_tokenizer(str(family_dirs[family]), family)
    expected = [ANSWER_TEXT[family].format(answer) for answer in ANSWERS]
    assert_trains_exactly_the_answers(tokenizer, TURNS, expected)
    assert_trains_exactly_the_answers(tokenizer, [SYSTEM, *TURNS], expected)
    assert SYSTEM["content"] in tokenizer.apply_chat_template([SYSTEM, *TURNS], tokenize=False)


@pytest.mark.parametrize("family", sorted(OWN_TEMPLATE_WORKS))
def test_own_template_is_used_when_it_is_correct(family_dirs, family):
    tokenizer = load_tokenizer(str(family_dirs[family]))
    own_end = {
        "mistral": " {}</s>",
        "llama2": " {} </s>",
        "llama3": "{}<|eot_id|>",
        "chatml": "{}<|im_end|>\n",
        "phi3": "{}<|end|>\n<|endoftext|>",
    }[family]
    turns = TURNS if OWN_TEMPLATE_WORKS[family] == "multi" else TURNS[:2]
    assert_trains_exactly_the_answers(
        tokenizer, turns, [own_end.format(a) for a in ANSWERS[: len(turns) // 2]]
    )


@pytest.mark.parametrize(
    ("family", "messages", "problem"),
    [
        ("gemma", TURNS, "does not end each answer with the EOS token '<eos>'"),  # <end_of_turn> only
        ("gemma", [SYSTEM, *TURNS], "System role not supported"),
        ("phi3", TURNS, "not render conversations as prefixes"),  # EOS only after the last turn
        ("llama2", TURNS, "exactly one BOS token at the start, got 2"),  # BOS before every [INST]
    ],
)
def test_own_template_that_would_train_wrong_is_refused_with_advice(family_dirs, family, messages, problem):
    tokenizer = load_tokenizer(str(family_dirs[family]))
    with pytest.raises(BuildError, match="set build.chat_template") as error:
        encode_conversation(tokenizer, messages)
    assert problem in str(error.value)


def test_train_on_inputs_keeps_every_label(tiny_tokenizer):
    example = encode_conversation(
        tiny_tokenizer, [SYSTEM, *TURNS], template=NAMED_TEMPLATES["mistral"], train_on_inputs=True
    )
    assert example.labels == example.input_ids


def test_post_text_holding_a_bos_token_is_refused(tiny_tokenizer):
    messages = [{"role": "user", "content": "hi <s> there"}, {"role": "assistant", "content": "hello back"}]
    with pytest.raises(BuildError, match="exactly one BOS"):
        encode_conversation(tiny_tokenizer, messages)


def test_cut_keeps_whole_answers(tiny_tokenizer):
    example = encode_conversation(tiny_tokenizer, TURNS)
    first_end = example.answer_spans[0][1]
    cut = example.cut(first_end + 1)
    assert cut.input_ids == example.input_ids[:first_end] and len(cut.answer_spans) == 1
    assert example.cut(first_end - 1) is None
    assert example.cut(len(example.input_ids)) is example
