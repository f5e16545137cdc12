"""Each artifact check flags answers with the problem planted and passes clean forum-style answers."""

import pytest

from forumtune.eval.artifacts import ARTIFACT_LABELS, Answer, artifact_counts, check_answer, detectors

CLEAN = [
    "Wax with a warm-temp hydrocarbon and brush it out well. The base will thank you.",
    "I ski 180s in the park; shorter is easier to spin. Note: DIN depends on weight, height and type.",
    "User manuals from the binding maker list the settings. Ask a shop to set them.",
    "Try a 4 degree side edge, then 1 degree base. Sharp edges on ice make all the difference.",
    "Q&A sessions at the shop are great. My answer: go for the 100 mm waist.",
    "Back in 2019 I wrote a long guide on this and it still holds: stance first, then gear.",
]

PLANTED = {
    "speaker_tag": [
        "Sure, try the softer boot.\nUser 2: I disagree, stiffer is better.",
        "Member #14: the lift opens at nine",
        "Assistant: wax it\nUser: thanks",
        "skibum42 wrote: keep your hands forward",
    ],
    "forum_boilerplate": [
        "Use a hot box.\nThis post was edited on 3 March 2024 by skibum",
        "Go for 90 mm. Last edited by powhound; 12-01-2023 at 10:14",
        "Sharpen them.\nEDIT: forgot the wax",
        "[quote=bob]old text[/quote] I agree",
        "Great advice.\n\nSent from my iPhone using Tapatalk",
    ],
    "template_token": [
        "Wax them. [/INST] Thanks!",
        "Sure.<|im_end|>\n<|im_start|>user",
        "Good question </s>",
        "<<SYS>> You are helpful",
        "Sharpen <end_of_turn>",
    ],
    "repeated_ngram": [
        "keep your weight forward and keep your weight forward and keep your weight forward",
        "the snow is good the snow is good the snow is good today",
    ],
    "empty": ["", "   \n  "],
}


@pytest.mark.parametrize("name", list(PLANTED))
def test_each_check_flags_its_planted_examples(name):
    detect = detectors()[name]
    for text in PLANTED[name]:
        assert detect(Answer(text)), f"{name} missed: {text!r}"


@pytest.mark.parametrize("name", list(ARTIFACT_LABELS))
def test_each_check_passes_clean_answers(name):
    detect = detectors()[name]
    for text in CLEAN:
        assert detect(Answer(text, ended=True, tokens=30)) is None, f"{name} fired on clean text: {text!r}"


def test_token_limit_check_reads_whether_generation_ended():
    detect = detectors()["hit_token_limit"]
    assert (
        detect(Answer("Wax it and", ended=False, tokens=96))
        == "stopped at 96 tokens without an end-of-sequence token"
    )
    assert detect(Answer("Wax it.", ended=True, tokens=4)) is None


def test_the_tokenizers_own_special_tokens_count_as_template_tokens():
    assert (
        check_answer(Answer("Wax it.<|eot|> next"), special_tokens=["<|eot|>"])["template_token"] == "<|eot|>"
    )
    assert "template_token" not in check_answer(Answer("Wax it."), special_tokens=["<|eot|>"])


def test_planted_checks_do_not_fire_on_each_other():
    assert set(check_answer(Answer(PLANTED["forum_boilerplate"][0]))) == {"forum_boilerplate"}
    assert set(check_answer(Answer(PLANTED["template_token"][0]))) == {"template_token"}


def test_counts_per_artifact_and_any():
    flags = [
        check_answer(Answer("User 2: hi [/INST]")),
        check_answer(Answer(CLEAN[0])),
        check_answer(Answer("wax", ended=False, tokens=8)),
    ]
    counts = artifact_counts(flags)
    assert counts["speaker_tag"] == 1 and counts["template_token"] == 1 and counts["hit_token_limit"] == 1
    assert counts["repeated_ngram"] == 0 and counts["any"] == 2
