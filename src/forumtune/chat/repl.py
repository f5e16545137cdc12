"""A streaming terminal chat with the fine-tune, optionally asking its base model the same questions."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from forumtune.chat.engine import Engine, Generation, SamplingSettings
from forumtune.chat.errors import ChatError
from forumtune.chat.grounding import Grounding
from forumtune.retrieval.context import Source

HELP_TEXT = """\
Commands:
  /reset          forget the conversation so far
  /save PATH      write the conversation to PATH as JSON
  /system TEXT    set the system prompt (/system alone removes it)
  /set NAME VALUE change a sampling setting: temperature, top_p, repetition_penalty, max_new_tokens, seed
                  (seed none: random)
  /settings       show the sampling settings
  /compare        side by side on/off: the base model answers each question too
  /sources        the forum posts the last reply drew on (with chat.retrieval)
  /help           show this help
  /quit           leave; so do Ctrl-D and Ctrl-C at the prompt (Ctrl-C during a reply stops it)"""

USER_PROMPT = "you> "
TUNED_LABEL = "bot> "
BASE_LABEL = "base> "
SETTING_TYPES: dict[str, Callable[[str], object]] = {
    "temperature": float,
    "top_p": float,
    "repetition_penalty": float,
    "max_new_tokens": int,
    "seed": lambda text: None if text.lower() == "none" else int(text),
}


@dataclass
class Conversation:
    system_prompt: str | None
    turns: list[dict[str, str]] = field(default_factory=list)

    def messages(self) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + self.turns


@dataclass
class ChatSession:
    """The conversation with the fine-tune and, in side-by-side mode, the base model's own one."""

    tuned: Engine
    base: Engine | None
    settings: SamplingSettings
    tuned_chat: Conversation
    base_chat: Conversation
    compare: bool = False
    grounding: Grounding | None = None  # chat.retrieval: the forum's passages go into each question
    sources: list[Source] = field(default_factory=list)  # what the last reply drew on (/sources)

    def set_system_prompt(self, text: str | None) -> None:
        self.tuned_chat.system_prompt = self.base_chat.system_prompt = text

    def reset(self) -> None:
        self.tuned_chat.turns.clear()
        self.base_chat.turns.clear()


def run_repl(
    engine: Engine,
    *,
    system_prompt: str | None,
    settings: SamplingSettings,
    base_engine: Engine | None = None,
    compare: bool = False,
    console: Console | None = None,
    input_fn: Callable[[str], str] = input,
    grounding: Grounding | None = None,
) -> None:
    """Chat in the terminal until /quit, end of input or Ctrl-C at the prompt."""
    console = console or Console()
    if compare and base_engine is None:
        raise ChatError("Side-by-side mode needs the base model; set chat.with_base=true.")
    session = ChatSession(
        engine,
        base_engine,
        settings,
        Conversation(system_prompt),
        Conversation(system_prompt),
        compare,
        grounding,
    )
    console.print("forumtune chat - type /help for commands", style="bold")
    if settings.max_new_tokens > (limit := reply_token_limit(session)):
        session.settings = dataclasses.replace(settings, max_new_tokens=limit)
        console.print(
            f"max_new_tokens {settings.max_new_tokens} (chat.max_new_tokens) does not fit the "
            f"model's {context_size(session)}-token context after the prompt: replies stop at "
            f"{limit} tokens (/set max_new_tokens N changes it).",
            style="yellow",
        )
    while True:
        try:
            line = input_fn(USER_PROMPT).strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        if not line:
            continue
        if line.startswith("/"):
            if not run_command(line, session, console):
                return
            continue
        ask(session, line, console)


def ask(session: ChatSession, question: str, console: Console) -> None:
    """The fine-tune answers; in side-by-side mode the base model answers the same question after it."""
    label = "tuned> " if session.compare else TUNED_LABEL
    sources = reply(
        session.tuned, session.tuned_chat, question, session.settings, console, label, session.grounding
    )
    if session.compare and session.base is not None:
        reply(
            session.base,
            session.base_chat,
            question,
            session.settings,
            console,
            BASE_LABEL,
            session.grounding,
        )
    if sources is not None:
        session.sources = sources
        console.print(f"({len(sources)} forum posts in the prompt: /sources lists them)", style="dim")


def run_command(line: str, session: ChatSession, console: Console) -> bool:
    """Carry out one /command; False means leave the chat."""
    name, _, argument = line.partition(" ")
    argument = argument.strip()
    if name in ("/quit", "/exit"):
        return False
    if name == "/reset":
        session.reset()
        console.print("Conversation cleared.", style="dim")
    elif name == "/save":
        save_conversation(session, argument, console)
    elif name == "/system":
        session.set_system_prompt(argument or None)
        console.print("System prompt set." if argument else "System prompt removed.", style="dim")
    elif name == "/set":
        change_setting(session, argument, console)
    elif name == "/settings":
        show_settings(session.settings, console)
    elif name == "/compare":
        toggle_compare(session, console)
    elif name == "/sources":
        show_sources(session, console)
    elif name == "/help":
        console.print(HELP_TEXT, markup=False, highlight=False)
    else:
        console.print(f"Unknown command {escape(name)}; /help lists the commands.", style="yellow")
    return True


def change_setting(session: ChatSession, argument: str, console: Console) -> None:
    name, _, value = argument.partition(" ")
    if name not in SETTING_TYPES or not value.strip():
        console.print(f"Usage: /set NAME VALUE, NAME one of {', '.join(SETTING_TYPES)}", style="yellow")
        return
    try:
        parsed = SETTING_TYPES[name](value.strip())
        limit = reply_token_limit(session)
        if name == "max_new_tokens" and isinstance(parsed, int) and parsed > limit:
            raise ChatError(
                f"a reply that long does not fit the model's {context_size(session)}-token "
                f"context after the prompt; at most {limit} here"
            )
        session.settings = dataclasses.replace(session.settings, **{name: parsed})
    except (ValueError, ChatError) as error:
        console.print(f"Cannot set {name} to {escape(value.strip())}: {escape(str(error))}", style="red")
        return
    show_settings(session.settings, console)


def session_engines(session: ChatSession) -> list[Engine]:
    return [session.tuned, *([session.base] if session.base is not None else [])]


def context_size(session: ChatSession) -> int:
    return min(engine.max_context_tokens for engine in session_engines(session))


def reply_token_limit(session: ChatSession) -> int:
    """The longest reply every engine's context holds after the shortest prompt: the system prompt and a
    one-word question. Longer replies would make every message fail."""
    shortest = Conversation(session.tuned_chat.system_prompt, [{"role": "user", "content": "hi"}]).messages()
    return min(
        engine.max_context_tokens - engine.count_tokens(shortest) for engine in session_engines(session)
    )


def show_settings(settings: SamplingSettings, console: Console) -> None:
    seed = "random" if settings.seed is None else settings.seed
    console.print(
        f"temperature={settings.temperature} top_p={settings.top_p} "
        f"repetition_penalty={settings.repetition_penalty} "
        f"max_new_tokens={settings.max_new_tokens} seed={seed}",
        style="dim",
    )


def show_sources(session: ChatSession, console: Console) -> None:
    if session.grounding is None:
        console.print(
            "Retrieval is off; start with --set chat.retrieval=true (after `forumtune index`).",
            style="yellow",
        )
        return
    if not session.sources:
        console.print("The last reply drew on no forum posts.", style="dim")
    for source in session.sources:
        byline = ", ".join(part for part in (source.author, source.date) if part)
        console.print(
            f"[{source.number}] {source.title}" + (f" ({byline})" if byline else ""),
            markup=False,
            highlight=False,
        )
        console.print(f"    {source.url}", markup=False, highlight=False, style="dim")


def toggle_compare(session: ChatSession, console: Console) -> None:
    if session.base is None:
        console.print(
            "No base model loaded; start with --set chat.with_base=true to compare.", style="yellow"
        )
        return
    session.compare = not session.compare
    if session.compare:
        session.base_chat.turns = list(session.tuned_chat.turns)  # the base picks up the conversation so far
    console.print(f"Side by side {'on' if session.compare else 'off'}.", style="dim")


def save_conversation(session: ChatSession, path_text: str, console: Console) -> None:
    if not path_text:
        console.print("Usage: /save PATH", style="yellow")
        return
    path = Path(path_text).expanduser()
    saved = {"messages": session.tuned_chat.messages()}
    if session.base_chat.turns:
        saved["base_messages"] = session.base_chat.messages()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(saved, ensure_ascii=False, indent=2) + "\n")
    except OSError as error:
        console.print(f"Could not write {escape(str(path))}: {escape(str(error))}", style="red")
        return
    console.print(f"Saved {len(saved['messages'])} messages to {escape(str(path))}.", style="dim")


def reply(
    engine: Engine,
    conversation: Conversation,
    user_text: str,
    settings: SamplingSettings,
    console: Console,
    label: str = TUNED_LABEL,
    grounding: Grounding | None = None,
) -> list[Source] | None:
    """Answer one user message, printing the reply as it streams; the turn is kept only if it worked.
    With grounding, the forum's passages go into the question (not into the kept history); returns them."""
    conversation.turns.append({"role": "user", "content": user_text})
    sources = None
    try:
        room = settings.max_new_tokens + (grounding.reserved_tokens if grounding else 0)
        messages = engine.trim_history(conversation.messages(), room)
        if len(messages) < len(conversation.messages()):
            console.print("(older turns left out to fit the context)", style="dim")
        if grounding is not None:
            grounded = grounding.ground(engine, messages)
            messages, sources = grounded.messages, grounded.sources
        generation = engine.generate(messages, **dataclasses.asdict(settings))
        text = print_streamed(generation, console, label)
    except ChatError as error:
        conversation.turns.pop()
        console.print(escape(str(error)), style="red")
        return None
    conversation.turns.append({"role": "assistant", "content": text})
    if generation.finish_reason == "length":
        console.print(f"(reply cut at {settings.max_new_tokens} tokens)", style="dim")
    return sources


def print_streamed(generation: Generation, console: Console, label: str) -> str:
    """Print the reply piece by piece; Ctrl-C stops the model and keeps what came so far."""
    console.print(label, end="", style="bold")
    pieces: list[str] = []
    stream = iter(generation)
    try:
        for piece in stream:
            console.out(piece, end="", highlight=False)
            pieces.append(piece)
    except KeyboardInterrupt:
        generation.cancel.set()
        stream.close()
        console.print()
        console.print("(stopped)", style="dim")
    console.print()
    return "".join(pieces)
