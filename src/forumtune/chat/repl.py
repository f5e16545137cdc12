"""A streaming terminal chat with one engine."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from forumtune.chat.engine import ChatEngine, Generation
from forumtune.chat.errors import ChatError

HELP_TEXT = """\
Commands:
  /reset        forget the conversation so far
  /save PATH    write the conversation to PATH as JSON
  /system TEXT  set the system prompt (/system alone removes it)
  /help         show this help
  /quit         leave; so do Ctrl-D and Ctrl-C at the prompt (Ctrl-C during a reply stops it)"""

USER_PROMPT = "you> "
BOT_LABEL = "bot> "


@dataclass
class Conversation:
    system_prompt: str | None
    turns: list[dict[str, str]] = field(default_factory=list)

    def messages(self) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + self.turns


def run_repl(
    engine: ChatEngine,
    *,
    system_prompt: str | None,
    max_new_tokens: int,
    temperature: float,
    console: Console | None = None,
    input_fn: Callable[[str], str] = input,
) -> None:
    """Chat in the terminal until /quit, end of input or Ctrl-C at the prompt."""
    console = console or Console()
    conversation = Conversation(system_prompt)
    console.print("forumtune chat - type /help for commands", style="bold")
    while True:
        try:
            line = input_fn(USER_PROMPT).strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        if not line:
            continue
        if line.startswith("/"):
            if not run_command(line, conversation, console):
                return
            continue
        reply(engine, conversation, line, max_new_tokens, temperature, console)


def run_command(line: str, conversation: Conversation, console: Console) -> bool:
    """Carry out one /command; False means leave the chat."""
    name, _, argument = line.partition(" ")
    argument = argument.strip()
    if name in ("/quit", "/exit"):
        return False
    if name == "/reset":
        conversation.turns.clear()
        console.print("Conversation cleared.", style="dim")
    elif name == "/save":
        save_conversation(conversation, argument, console)
    elif name == "/system":
        conversation.system_prompt = argument or None
        console.print("System prompt set." if argument else "System prompt removed.", style="dim")
    elif name == "/help":
        console.print(HELP_TEXT, markup=False, highlight=False)
    else:
        console.print(f"Unknown command {escape(name)}; /help lists the commands.", style="yellow")
    return True


def save_conversation(conversation: Conversation, path_text: str, console: Console) -> None:
    if not path_text:
        console.print("Usage: /save PATH", style="yellow")
        return
    path = Path(path_text).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps({"messages": conversation.messages()}, ensure_ascii=False, indent=2) + "\n"
        )
    except OSError as error:
        console.print(f"Could not write {escape(str(path))}: {escape(str(error))}", style="red")
        return
    console.print(f"Saved {len(conversation.messages())} messages to {escape(str(path))}.", style="dim")


def reply(
    engine: ChatEngine,
    conversation: Conversation,
    user_text: str,
    max_new_tokens: int,
    temperature: float,
    console: Console,
) -> None:
    """Answer one user message, printing the reply as it streams; the turn is kept only if it worked."""
    conversation.turns.append({"role": "user", "content": user_text})
    try:
        messages = engine.trim_history(conversation.messages(), max_new_tokens)
        if len(messages) < len(conversation.messages()):
            console.print("(older turns left out to fit the context)", style="dim")
        generation = engine.generate(messages, max_new_tokens=max_new_tokens, temperature=temperature)
        text = print_streamed(generation, console)
    except ChatError as error:
        conversation.turns.pop()
        console.print(escape(str(error)), style="red")
        return
    conversation.turns.append({"role": "assistant", "content": text})
    if generation.finish_reason == "length":
        console.print(f"(reply cut at {max_new_tokens} tokens)", style="dim")


def print_streamed(generation: Generation, console: Console) -> str:
    """Print the reply piece by piece; Ctrl-C stops the model and keeps what came so far."""
    console.print(BOT_LABEL, end="", style="bold")
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
