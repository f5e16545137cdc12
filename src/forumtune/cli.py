"""The `forumtune` command: argument parsing only; each verb calls one stage function."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from forumtune.config import Config, dump_config, load_config
from forumtune.errors import ForumtuneError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Turn an online forum into a domain chatbot: scrape → build → train → eval → merge → export → chat.")
console = Console(highlight=False)
ConfigArg = Annotated[Path, typer.Argument(help="YAML config, e.g. examples/demo.yaml")]
SetOption = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override a key: --set train.max_steps=30")]


def _load(config_path: Path, overrides: list[str] | None) -> Config:
    return load_config(config_path, overrides or [])


def _stage(name: str, config_path: Path, overrides: list[str] | None, **options: object) -> None:
    from forumtune.pipeline import get_stage, run_stage

    run_stage(get_stage(name), _load(config_path, overrides), console, **options)


@app.command("config")
def show_config(config: ConfigArg, overrides: SetOption = None) -> None:
    """Print the resolved, validated config (every key, defaults filled in)."""
    print(dump_config(_load(config, overrides)), end="")


@app.command()
def scrape(config: ConfigArg, overrides: SetOption = None) -> None:
    """Crawl the forum into runs/<name>/forum.sqlite (rerun to resume an interrupted crawl)."""
    _stage("scrape", config, overrides)


@app.command()
def build(config: ConfigArg, overrides: SetOption = None) -> None:
    """Clean, pair, template, tokenize and mask: runs/<name>/dataset/{train,eval}.jsonl."""
    _stage("build", config, overrides)


@app.command()
def inspect(config: ConfigArg, overrides: SetOption = None,
            count: Annotated[int, typer.Option("-n", help="Examples to show")] = 2,
            split: Annotated[str, typer.Option(help="train or eval")] = "train") -> None:
    """Show tokenized examples: grey tokens are masked from the loss, green ones are trained."""
    from forumtune.base_model import load_tokenizer
    from forumtune.data.inspect import show_examples

    cfg = _load(config, overrides)
    tokenizer = load_tokenizer(cfg.model.base, cfg.build.chat_template)
    show_examples(tokenizer, cfg.run_dir / "dataset", console, split=split, count=count)


@app.command()
def train(config: ConfigArg, overrides: SetOption = None,
          resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint")] = False) -> None:
    """QLoRA fine-tune: 4-bit base, LoRA on all linear layers; writes runs/<name>/adapter."""
    _stage("train", config, overrides, resume=resume)


@app.command("eval")
def evaluate(config: ConfigArg, overrides: SetOption = None) -> None:
    """Eval loss of base vs fine-tuned, answers side by side, loss curves: runs/<name>/report.html."""
    _stage("eval", config, overrides)


@app.command()
def merge(config: ConfigArg, overrides: SetOption = None) -> None:
    """Fold the adapter into the base: runs/<name>/merged (safetensors)."""
    _stage("merge", config, overrides)


@app.command()
def export(config: ConfigArg, overrides: SetOption = None) -> None:
    """Write the merged model as GGUF for llama.cpp / Ollama: runs/<name>/export/."""
    _stage("export", config, overrides)


@app.command()
def plan(config: ConfigArg, overrides: SetOption = None,
         vram: Annotated[Optional[float], typer.Option(help="Card memory in GiB (default plan.vram_gib)")] = None) -> None:
    """Estimate peak GPU memory of the training config before loading anything heavy."""
    from forumtune.train.plan import plan_memory, print_plan

    cfg = _load(config, overrides)
    print_plan(plan_memory(cfg, vram), cfg, console)


@app.command()
def chat(config: ConfigArg, overrides: SetOption = None,
         merged: Annotated[bool, typer.Option(help="Use the merged model instead of base + adapter")] = False) -> None:
    """Streaming terminal chat with the fine-tuned model."""
    from forumtune.chat.stage import run_chat

    cfg = _load(config, overrides)
    run_chat(cfg, cfg.run_dir, console, merged=merged)


@app.command()
def serve(config: ConfigArg, overrides: SetOption = None,
          merged: Annotated[bool, typer.Option(help="Use the merged model instead of base + adapter")] = False) -> None:
    """OpenAI-compatible HTTP server (/v1/chat/completions) on chat.host:chat.port."""
    from forumtune.chat.stage import run_serve

    cfg = _load(config, overrides)
    run_serve(cfg, cfg.run_dir, console, merged=merged)


@app.command()
def run(config: ConfigArg, overrides: SetOption = None,
        force: Annotated[bool, typer.Option(help="Rerun every stage")] = False,
        until: Annotated[Optional[str], typer.Option(help="Stop after this stage")] = None) -> None:
    """Every stage in order (scrape, build, train, eval, merge, export), skipping what is done."""
    from forumtune.pipeline import STAGE_NAMES, run_pipeline

    if until is not None and until not in STAGE_NAMES:
        raise typer.BadParameter(f"--until must be one of {STAGE_NAMES}")
    cfg = _load(config, overrides)
    run_pipeline(cfg, console, force=force, until=until)
    console.print(f"[bold green]done[/]: artifacts in {cfg.run_dir}")


def quiet_libraries() -> None:
    """Our own progress display replaces the libraries' bars and their advice meant for developers."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message="Paged optimizers are not supported on CPU")
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")
    warnings.filterwarnings("ignore", category=UserWarning, module="torch.utils.checkpoint")


def main() -> None:
    quiet_libraries()
    try:
        app()
    except ForumtuneError as error:
        console.print(f"[bold red]error:[/] {error}")
        sys.exit(2)


if __name__ == "__main__":
    main()
