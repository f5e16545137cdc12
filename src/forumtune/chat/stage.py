"""The `chat` and `serve` stages: load the fine-tune (adapter on its base, or the merged model) and talk."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from transformers import AutoModelForCausalLM

from forumtune.base_model import load_tokenizer
from forumtune.chat.engine import ChatEngine
from forumtune.chat.errors import ChatError
from forumtune.config import Config
from forumtune.train.loading import load_adapter_model, pick_device


def load_engine(config: Config, run_dir: Path, *, merged: bool = False) -> ChatEngine:
    device = pick_device(config.train.device)
    tokenizer = load_tokenizer(config.model.base, config.build.chat_template)
    if merged:
        merged_dir = run_dir / "merged"
        if not (merged_dir / "config.json").exists():
            raise ChatError(f"no merged model at {merged_dir}: run `forumtune merge` first, or drop --merged")
        model = AutoModelForCausalLM.from_pretrained(merged_dir).to(device)
    else:
        adapter_dir = run_dir / "adapter"
        if not (adapter_dir / "adapter_config.json").exists():
            raise ChatError(f"no adapter at {adapter_dir}: run `forumtune train` first")
        model = load_adapter_model(config, adapter_dir, device)
    return ChatEngine(model, tokenizer)


def run_chat(config: Config, run_dir: Path, console: Console, *, merged: bool = False) -> None:
    from forumtune.chat.repl import run_repl

    engine = load_engine(config, run_dir, merged=merged)
    run_repl(engine, system_prompt=config.chat.system_prompt or config.build.system_prompt,
             max_new_tokens=config.chat.max_new_tokens, temperature=config.chat.temperature, console=console)


def run_serve(config: Config, run_dir: Path, console: Console, *, merged: bool = False) -> None:
    from forumtune.chat.server import serve

    engine = load_engine(config, run_dir, merged=merged)
    chat = config.chat
    console.print(f"serving model {config.name!r} at http://{chat.host}:{chat.port}/v1 (OpenAI-compatible)")
    serve({config.name: engine}, host=chat.host, port=chat.port, api_key=chat.api_key)
