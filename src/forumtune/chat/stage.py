"""The `chat` and `serve` stages: load the fine-tune (adapter on its base, merged, or GGUF) and talk to it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from transformers import AutoModelForCausalLM

from forumtune.base_model import load_tokenizer
from forumtune.chat.engine import Engine, SamplingSettings
from forumtune.chat.errors import ChatError
from forumtune.chat.grounding import Grounding
from forumtune.chat.transformers_engine import TransformersEngine
from forumtune.config import Config
from forumtune.layout import RunLayout
from forumtune.models import load_adapter_model, load_base_model, pick_device
from forumtune.retrieval.retriever import Retriever


@dataclass(frozen=True)
class ChatModels:
    tuned: Engine
    base: Engine | None


def missing_artifact(config: Config, paths: RunLayout) -> str | None:
    """What chat.source needs that the run dir lacks, and the command that makes it; None if nothing."""
    needed = {
        "adapter": (
            paths.final.adapter_config,
            f"no adapter at {paths.final.adapter}: run `forumtune train` first (chat.source=adapter)",
        ),
        "merged": (
            paths.merged_config,
            f"no merged model at {paths.merged}: run `forumtune merge` first (chat.source=merged)",
        ),
        "gguf": (
            paths.gguf,
            f"no GGUF file at {paths.gguf}: run `forumtune export` first, or use chat.source=merged",
        ),
    }
    path, problem = needed[config.chat.source]
    return None if path.is_file() else problem


def load_grounding(config: Config, run_dir: Path) -> Grounding | None:
    """The forum's search index when chat.retrieval is on (loaded before the model: a missing index fails fast)."""
    if not config.chat.retrieval:
        return None
    paths = RunLayout.of(config, run_dir)
    if not paths.search_index.exists():
        raise ChatError(
            f"chat.retrieval is on but there is no search index at {paths.search_index}: run "
            "`forumtune index` first, or set chat.retrieval: false"
        )
    retriever = Retriever.open(paths.search_index, paths.vector_index)
    return Grounding(retriever, config.chat.retrieval_top_k, config.chat.retrieval_tokens)


def load_chat_models(config: Config, run_dir: Path) -> ChatModels:
    """The fine-tune as chat.source says, and its base model when chat.with_base asks for it."""
    paths = RunLayout.of(config, run_dir)
    if (problem := missing_artifact(config, paths)) is not None:
        raise ChatError(problem)  # before anything slow is loaded
    chat = config.chat
    tokenizer = load_tokenizer(config.model.base, config.build.chat_template)
    device = pick_device(config.chat.device, key="chat.device")
    with_base = chat.with_base if chat.with_base is not None else chat.source == "adapter"
    if chat.source == "adapter":
        model = load_adapter_model(config.model, paths.final.adapter, device)
        tuned = TransformersEngine(model, tokenizer, max_context_tokens=chat.context_tokens)
        # The base answers through the same weights with the adapter switched off: no second copy.
        base = TransformersEngine(
            model, tokenizer, max_context_tokens=chat.context_tokens, without_adapter=True
        )
        return ChatModels(tuned, base if with_base else None)
    if chat.source == "merged":
        model = AutoModelForCausalLM.from_pretrained(paths.merged).to(device)
        tuned = TransformersEngine(model, tokenizer, max_context_tokens=chat.context_tokens)
    else:
        from forumtune.chat.gguf_engine import GgufEngine

        tuned = GgufEngine(paths.gguf, tokenizer, max_context_tokens=chat.context_tokens)
    if not with_base:
        return ChatModels(tuned, None)
    base_model = load_base_model(config.model, device)
    return ChatModels(
        tuned, TransformersEngine(base_model, tokenizer, max_context_tokens=chat.context_tokens)
    )


def sampling_settings(config: Config) -> SamplingSettings:
    chat = config.chat
    return SamplingSettings(
        chat.max_new_tokens, chat.temperature, chat.top_p, repetition_penalty=chat.repetition_penalty
    )


def run_chat(config: Config, run_dir: Path, console: Console, *, compare: bool = False) -> None:
    from forumtune.chat.repl import run_repl

    if compare and config.chat.with_base is False:
        raise ChatError("--compare needs the base model, but chat.with_base is false; drop one of them")
    if compare and config.chat.with_base is None:
        config = config.model_copy(update={"chat": config.chat.model_copy(update={"with_base": True})})
    grounding = load_grounding(config, run_dir)
    with console.status(f"loading the {config.chat.source} model..."):
        models = load_chat_models(config, run_dir)
    run_repl(
        models.tuned,
        base_engine=models.base,
        compare=compare,
        system_prompt=config.chat.system_prompt or config.build.system_prompt,
        settings=sampling_settings(config),
        console=console,
        grounding=grounding,
    )


def run_serve(config: Config, run_dir: Path, console: Console) -> None:
    from forumtune.chat.listen import bind_socket, check_host
    from forumtune.chat.server import serve

    chat = config.chat
    check_host(chat.host, chat.api_key)
    # The port is taken before the model loads: a port in use is said at once, not after the wait, and
    # nothing claims to be serving that is not.
    listening = bind_socket(chat.host, chat.port)
    try:
        grounding = load_grounding(config, run_dir)
        with console.status(f"loading the {chat.source} model..."):
            models = load_chat_models(config, run_dir)
        engines = {config.name: models.tuned}
        if models.base is not None:
            engines[f"{config.name}-base"] = models.base
        address = f"http://{url_host(chat.host)}:{listening.getsockname()[1]}"
        console.print(
            f"serving {escape(', '.join(engines))} at {escape(address)}/v1 (OpenAI-compatible); "
            f"chat page at {escape(address)}/"
        )
        serve(
            engines,
            host=chat.host,
            port=chat.port,
            api_key=chat.api_key,
            max_tokens_limit=chat.max_request_tokens,
            max_queue=chat.max_queue,
            sampling=sampling_settings(config),
            system_prompt=chat.system_prompt or config.build.system_prompt,
            listening=listening,
            grounding=grounding,
        )
    finally:
        listening.close()


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
