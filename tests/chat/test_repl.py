"""The terminal chat, driven by scripted input and printing to an in-memory console."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable

import pytest
from rich.console import Console

from forumtune.chat.engine import SamplingSettings
from forumtune.chat.repl import run_repl


def scripted(lines: Iterable[str | BaseException]) -> Callable[[str], str]:
    """An input_fn answering each prompt with the next line, or raising it if it is an exception."""
    remaining = iter(lines)

    def input_fn(prompt: str) -> str:
        line = next(remaining)
        if isinstance(line, BaseException):
            raise line
        return line

    return input_fn


def memory_console() -> Console:
    return Console(file=io.StringIO(), width=200, color_system=None)


def output_of(console: Console) -> str:
    return console.file.getvalue()


def chat(engine, lines, system_prompt: str | None = "You help with motorbikes.") -> Console:
    console = memory_console()
    run_repl(
        engine,
        system_prompt=system_prompt,
        settings=SamplingSettings(max_new_tokens=12, temperature=0),
        console=console,
        input_fn=scripted(lines),
    )
    return console


def test_conversation_is_saved_reset_and_continued(engine, tmp_path):
    first, after_reset, final = (
        tmp_path / "first.json",
        tmp_path / "after_reset.json",
        tmp_path / "final.json",
    )
    console = chat(
        engine,
        [
            "my bike runs hot",
            "",
            "and it makes a weird noise",
            f"/save {first}",
            "/reset",
            f"/save {after_reset}",
            "/system Answer in one line.",
            "the firmware got an update",
            f"/save {final}",
            "/quit",
            "never read",
        ],
    )

    saved = json.loads(first.read_text())["messages"]
    assert [message["role"] for message in saved] == ["system", "user", "assistant", "user", "assistant"]
    assert saved[0]["content"] == "You help with motorbikes."
    assert saved[1]["content"] == "my bike runs hot" and saved[3]["content"] == "and it makes a weird noise"
    history = [{"role": "system", "content": "You help with motorbikes."}, saved[1]]
    expected_reply = engine.complete(history, max_new_tokens=12, temperature=0)[0]
    assert saved[2]["content"] == expected_reply
    assert expected_reply in output_of(console)

    assert json.loads(after_reset.read_text())["messages"] == [saved[0]]
    final_roles = [
        (message["role"], message["content"]) for message in json.loads(final.read_text())["messages"]
    ]
    assert final_roles[:2] == [("system", "Answer in one line."), ("user", "the firmware got an update")]
    assert len(final_roles) == 3
    assert "Conversation cleared." in output_of(console)


def test_help_and_unknown_commands_are_answered(engine):
    output = output_of(chat(engine, ["/help", "/frobnicate", "/save", "/quit"]))
    assert "/reset" in output and "/save PATH" in output and "/system TEXT" in output
    assert "Unknown command /frobnicate" in output
    assert "Usage: /save PATH" in output


@pytest.mark.parametrize("ending", [EOFError(), KeyboardInterrupt()])
def test_end_of_input_and_ctrl_c_at_the_prompt_leave_cleanly(engine, ending):
    console = chat(engine, ["hello there", ending])
    assert "bot> " in output_of(console)


def test_a_message_too_long_for_the_context_is_refused_and_forgotten(loaded, tmp_path):
    from forumtune.chat.transformers_engine import TransformersEngine

    small = TransformersEngine(*loaded, max_context_tokens=60)
    saved = tmp_path / "chat.json"
    console = chat(small, ["word " * 80, f"/save {saved}", "/quit"], system_prompt=None)
    assert "Shorten the message" in output_of(console)
    assert json.loads(saved.read_text())["messages"] == []


def test_ctrl_c_during_a_reply_stops_it_and_keeps_the_chat_going(
    long_context_engine, wait_until_idle, tmp_path
):
    console = memory_console()

    def press_ctrl_c_once_replying() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if "bot> " in output_of(console) and long_context_engine.is_busy():
                # only while the reply streams: a Ctrl-C after it would land in whatever runs next
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.002)

    def input_fn(prompt: str) -> str:
        threading.Thread(target=press_ctrl_c_once_replying, daemon=True).start()
        return "tell me a very long story"

    saved = tmp_path / "chat.json"
    answers = scripted([f"/save {saved}", "/quit"])
    prompts = iter([input_fn, answers, answers])
    try:
        run_repl(
            long_context_engine,
            system_prompt=None,
            settings=SamplingSettings(max_new_tokens=3000, temperature=0),
            console=console,
            input_fn=lambda prompt: next(prompts)(prompt),
        )
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C during a reply escaped the REPL")

    assert "(stopped)" in output_of(console)
    assert wait_until_idle(long_context_engine, timeout=1.0)
    messages = json.loads(saved.read_text())["messages"]
    assert [message["role"] for message in messages] == ["user", "assistant"]


def test_sampling_settings_can_be_changed_mid_chat(engine, tmp_path):
    saved = tmp_path / "chat.json"
    console = chat(
        engine,
        [
            "/set max_new_tokens 5",
            "/set temperature hot",
            "/set top_p 0",
            "/set colour blue",
            "my bike runs hot",
            "/settings",
            f"/save {saved}",
            "/quit",
        ],
        system_prompt=None,
    )
    output = output_of(console)
    assert "max_new_tokens=5" in output and "temperature=0 " in output
    assert "Cannot set temperature to hot" in output and "Cannot set top_p to 0" in output
    assert "Usage: /set NAME VALUE" in output
    reply = json.loads(saved.read_text())["messages"][1]["content"]
    assert (
        reply
        == engine.complete(
            [{"role": "user", "content": "my bike runs hot"}], max_new_tokens=5, temperature=0
        )[0]
    )
    assert "(reply cut at 5 tokens)" in output


def test_side_by_side_asks_base_and_fine_tune_the_same_question(tuned_and_base, tmp_path):
    tuned, base = tuned_and_base.values()
    saved = tmp_path / "chat.json"
    console = memory_console()
    run_repl(
        tuned,
        base_engine=base,
        system_prompt=None,
        settings=SamplingSettings(max_new_tokens=10, temperature=0),
        console=console,
        input_fn=scripted(
            ["/compare", "which skis for powder", "/compare", "and for ice", f"/save {saved}", "/quit"]
        ),
    )

    question = [{"role": "user", "content": "which skis for powder"}]
    tuned_reply = tuned.complete(question, max_new_tokens=10, temperature=0)[0]
    base_reply = base.complete(question, max_new_tokens=10, temperature=0)[0]
    assert tuned_reply != base_reply
    output = output_of(console)
    assert f"tuned> {tuned_reply}" in output and f"base> {base_reply}" in output
    assert "Side by side on." in output and "Side by side off." in output
    conversation = json.loads(saved.read_text())
    assert [m["content"] for m in conversation["messages"][::2]] == ["which skis for powder", "and for ice"]
    assert conversation["base_messages"] == [*question, {"role": "assistant", "content": base_reply}]


def test_compare_without_a_base_model_explains_how_to_get_one(engine):
    output = output_of(chat(engine, ["/compare", "/quit"]))
    assert "chat.with_base=true" in output


def test_long_history_is_trimmed_to_the_context_and_the_chat_goes_on(loaded, tmp_path):
    from forumtune.chat.transformers_engine import TransformersEngine

    small = TransformersEngine(*loaded, max_context_tokens=120)
    questions = [f"question {n}: the old engine runs hot every morning" for n in range(6)]
    saved = tmp_path / "chat.json"
    console = chat(small, [*questions, f"/save {saved}", "/quit"], system_prompt="Be brief.")

    assert "(older turns left out to fit the context)" in output_of(console)
    messages = json.loads(saved.read_text())["messages"]
    assert len(messages) == 1 + 2 * len(
        questions
    )  # the whole conversation is kept; only the prompt is trimmed


def test_a_reply_length_beyond_the_context_is_refused_at_set_time(engine):
    console = chat(
        engine, ["/set max_new_tokens 5000", "/settings", "/set max_new_tokens 100", "/settings", "/quit"]
    )
    output = output_of(console)
    assert (
        "Cannot set max_new_tokens to 5000: a reply that long does not fit the model's 2048-token context"
        in output
    )
    limit = int(output.split("at most ")[1].split(" ")[0])
    assert (
        2000 < limit < 2048
    )  # the context less the shortest prompt: the system prompt and a one-word question
    assert output.index("max_new_tokens=12") < output.index("max_new_tokens=100")  # 5000 was not taken


def test_a_configured_reply_length_beyond_the_context_is_capped_with_a_notice(engine):
    console = memory_console()
    run_repl(
        engine,
        system_prompt=None,
        settings=SamplingSettings(max_new_tokens=9000, temperature=0),
        console=console,
        input_fn=scripted(["/settings", "/quit"]),
    )
    output = output_of(console)
    assert "max_new_tokens 9000 (chat.max_new_tokens) does not fit the model's 2048-token context" in output
    assert "max_new_tokens=9000" not in output
