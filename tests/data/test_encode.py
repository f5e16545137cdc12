import pytest

from forumtune.data.encode import IGNORE_INDEX, check_special_tokens, encode_conversation
from forumtune.data.templates import NAMED_TEMPLATES

ANSWER = "Wax every 3 or 4 days on snow, more in spring slush."
CONVERSATION = [
    {"role": "system", "content": "You answer questions from a ski forum."},
    {"role": "user", "content": "How often should I wax my skis?"},
    {"role": "assistant", "content": ANSWER},
]
# What each template writes around an answer, after the generation prompt: the trained text.
TRAINED_TEXT = {
    "mistral": " " + ANSWER + "</s>",
    "llama2": " " + ANSWER + " </s>",
    "chatml": ANSWER + "<|im_end|></s>\n",
}


def trained_text(tokenizer, example) -> str:
    ids = [t for t, label in zip(example.input_ids, example.labels) if label != IGNORE_INDEX]
    return tokenizer.decode(ids)


@pytest.mark.parametrize("name", sorted(NAMED_TEMPLATES))
def test_one_bos_eos_after_answer_and_exact_mask(tiny_tokenizer, name):
    template = NAMED_TEMPLATES[name]
    example = encode_conversation(tiny_tokenizer, CONVERSATION, template=template)
    check_special_tokens(tiny_tokenizer, example)
    assert example.input_ids.count(tiny_tokenizer.bos_token_id) == 1
    assert example.input_ids[0] == tiny_tokenizer.bos_token_id
    assert trained_text(tiny_tokenizer, example) == TRAINED_TEXT[name]
    prompt_text = tiny_tokenizer.apply_chat_template(CONVERSATION[:-1], chat_template=template, tokenize=False,
                                                     add_generation_prompt=True)
    prompt_ids = tiny_tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    # token by token: every prompt token masked, every later token trained on its own id
    assert example.labels[: len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)
    assert example.labels[len(prompt_ids):] == example.input_ids[len(prompt_ids):]
    assert example.input_ids[: len(prompt_ids)] == prompt_ids


def test_multi_turn_trains_every_answer_and_masks_every_question(tiny_tokenizer):
    messages = CONVERSATION[1:] + [{"role": "user", "content": "And with a wax iron?"},
                                   {"role": "assistant", "content": "Keep it moving, never let it smoke."}]
    example = encode_conversation(tiny_tokenizer, messages, template=NAMED_TEMPLATES["mistral"])
    assert trained_text(tiny_tokenizer, example) == " " + ANSWER + "</s> Keep it moving, never let it smoke.</s>"
    assert example.input_ids.count(tiny_tokenizer.eos_token_id) == 2


def test_train_on_inputs_keeps_every_label(tiny_tokenizer):
    example = encode_conversation(tiny_tokenizer, CONVERSATION, template=NAMED_TEMPLATES["mistral"],
                                  train_on_inputs=True)
    assert example.labels == example.input_ids


def test_tokenizer_default_template_is_used(tiny_tokenizer):
    assert encode_conversation(tiny_tokenizer, CONVERSATION) == encode_conversation(
        tiny_tokenizer, CONVERSATION, template=NAMED_TEMPLATES["mistral"])
