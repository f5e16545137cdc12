"""The `forumtune` command: argument parsing only; each verb calls one stage function."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from forumtune import __version__
from forumtune.config import Config, dump_config, load_config
from forumtune.errors import ForumtuneError
from forumtune.quiet import quiet_libraries

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Turn an online forum into a domain chatbot: scrape → build → train → eval → merge → export → chat.",
)
# Results go to stdout, problems to stderr: `scrape --json > summary.json` or `config > resolved.yaml` never
# capture an error message.
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False, soft_wrap=True)
ConfigArg = Annotated[Path, typer.Argument(help="YAML config, e.g. examples/demo.yaml")]
SetOption = Annotated[
    list[str] | None, typer.Option("--set", "-s", help="Override a key: --set train.max_steps=30")
]
SourceOption = Annotated[str | None, typer.Option(help="adapter, merged or gguf (sets chat.source)")]


def _load(config_path: Path, overrides: list[str] | None, *, needs_model: bool = True) -> Config:
    """The validated config; when the command loads the base model, a hub id is checked reachable first."""
    config = load_config(config_path, overrides or [])
    if needs_model:
        from forumtune.hub import check_hub_model

        check_hub_model(config.model.base)
    return config


def _show_version(value: bool) -> None:
    if value:
        print(f"forumtune {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit"),
    ] = False,
) -> None:
    """Turn an online forum into a domain chatbot: scrape → build → train → eval → merge → export → chat."""


def _stage(name: str, config_path: Path, overrides: list[str] | None, **options: object) -> None:
    from forumtune.pipeline import get_stage, run_stage

    config = _load(config_path, overrides, needs_model=name not in ("scrape", "index"))
    run_stage(get_stage(name), config, console, **options)


@app.command("config")
def show_config(config: ConfigArg, overrides: SetOption = None) -> None:
    """Print the resolved, validated config (every key, defaults filled in)."""
    print(dump_config(_load(config, overrides, needs_model=False)), end="")


@app.command()
def scrape(
    config: ConfigArg,
    overrides: SetOption = None,
    probe: Annotated[
        str | None,
        typer.Option(help="Fetch this one page and show which site profile reads it, and what it extracts"),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the crawl summary as JSON on stdout")
    ] = False,
    suggest: Annotated[
        bool,
        typer.Option(
            help="With --probe: propose scrape.selectors for site: generic from the page's repeated posts"
        ),
    ] = False,
) -> None:
    """Crawl the forum into runs/<name>/forum.sqlite (rerun to resume a crawl, or later to fetch what is new)."""
    if probe is not None:
        from forumtune.scrape.stage import run_probe

        cfg = _load(config, overrides, needs_model=False)
        run_probe(cfg, probe, Console(stderr=True) if as_json else console, as_json=as_json, suggest=suggest)
    elif as_json:
        import json

        from forumtune.pipeline import get_stage, run_stage

        summary = run_stage(
            get_stage("scrape"),
            _load(config, overrides, needs_model=False),
            Console(stderr=True, highlight=False),
        )
        print(json.dumps(summary, indent=2))
    else:
        _stage("scrape", config, overrides)


@app.command("import")
def import_dump(
    config: ConfigArg,
    paths: Annotated[list[Path], typer.Argument(help="Posts.xml, or Reddit JSON lines (submissions first)")],
    dump_format: Annotated[str, typer.Option("--format", help="stackexchange or reddit")],
    overrides: SetOption = None,
) -> None:
    """Import a Stack Exchange or Reddit dump into runs/<name>/forum.sqlite (rerun to resume); then build."""
    from forumtune.pipeline import prepare_run_dir
    from forumtune.scrape.dumps import run_import

    cfg = _load(config, overrides, needs_model=False)
    run_import(dump_format, paths, prepare_run_dir(cfg).forum_store, console)


@app.command()
def index(config: ConfigArg, overrides: SetOption = None) -> None:
    """Search index over the store's cleaned posts (BM25, dense vectors with index.embedding_model):
    runs/<name>/index.sqlite; a rerun updates only what the last crawl changed."""
    _stage("index", config, overrides)


@app.command()
def build(config: ConfigArg, overrides: SetOption = None) -> None:
    """Clean, pair, template, tokenize and mask: runs/<name>/dataset/{train,eval}.jsonl."""
    _stage("build", config, overrides)


@app.command()
def inspect(
    config: ConfigArg,
    overrides: SetOption = None,
    count: Annotated[int, typer.Option("-n", help="Examples to show")] = 2,
    split: Annotated[str, typer.Option(help="train or eval")] = "train",
) -> None:
    """Tokenized examples (grey: masked from the loss, green: trained), dataset stats, a length histogram PNG."""
    from forumtune.base_model import load_tokenizer
    from forumtune.data.inspect import show_examples
    from forumtune.layout import RunLayout

    cfg = _load(config, overrides)
    tokenizer = load_tokenizer(cfg.model.base, cfg.build.chat_template)
    show_examples(
        tokenizer,
        RunLayout.of(cfg).dataset.dir,
        console,
        split=split,
        count=count,
        max_seq_len=cfg.build.max_seq_len,
    )


RestartOption = Annotated[
    bool,
    typer.Option("--restart", help="Train from step 0; earlier checkpoints move to runs/<name>/previous/"),
]


@app.command()
def train(
    config: ConfigArg,
    overrides: SetOption = None,
    restart: RestartOption = False,
    resume: Annotated[bool, typer.Option("--resume", hidden=True)] = False,
) -> None:  # the default now
    """QLoRA fine-tune: 4-bit base, LoRA on all linear layers; writes runs/<name>/adapter.

    Continues from the last checkpoint made with the same settings (--resume is the default and kept
    as a no-op). With train.then, the second training follows (runs/<name>/<its method>/). On several
    GPUs: torchrun --nproc-per-node N -m forumtune.cli train CONFIG (rank 0 prints and writes)."""
    from forumtune.ranks import is_main_process

    console.quiet = not is_main_process()
    _stage("train", config, overrides, restart=restart)
    if load_config(config, overrides or []).train.then is not None:
        _stage("train_then", config, overrides, restart=restart)


@app.command("eval")
def evaluate(
    config: Annotated[Path | None, typer.Argument(help="YAML config, e.g. examples/demo.yaml")] = None,
    overrides: SetOption = None,
    compare: Annotated[
        tuple[Path, Path] | None,
        typer.Option(
            help="Two evaluated runs (run dirs or their configs) in one report instead", metavar="RUN_A RUN_B"
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for the --compare report")] = None,
) -> None:
    """Eval loss of base vs fine-tuned, answers side by side with artifact checks, loss curves: report.html."""
    if compare is not None:
        from forumtune.eval.compare import compare_runs

        console.print(f"comparison written to {escape(str(compare_runs(*compare, out_dir=out)))}")
    elif config is None:
        raise typer.BadParameter("give a CONFIG to evaluate, or --compare RUN_A RUN_B")
    else:
        _stage("eval", config, overrides)


@app.command()
def merge(config: ConfigArg, overrides: SetOption = None) -> None:
    """Fold the adapter into the base: runs/<name>/merged (safetensors)."""
    _stage("merge", config, overrides)


@app.command()
def export(
    config: ConfigArg,
    overrides: SetOption = None,
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--format", "-f", help="gguf, modelfile or lora-gguf; repeat for several (default export.formats)"
        ),
    ] = None,
    verify: Annotated[
        bool | None,
        typer.Option("--verify/--no-verify", help="Load the exports back and compare with the merged model"),
    ] = None,
) -> None:
    """Write GGUF (llama.cpp), an Ollama Modelfile and/or a GGUF LoRA into runs/<name>/export/."""
    allowed = ("gguf", "modelfile", "lora-gguf")
    if any(name not in allowed for name in formats or []):
        raise typer.BadParameter(f"--format must be one of {allowed}")
    _stage("export", config, overrides, formats=formats, verify=verify)


@app.command()
def plan(
    config: ConfigArg,
    overrides: SetOption = None,
    vram: Annotated[
        float | None,
        typer.Option(
            help="The card's memory as sold, in GB (default plan.vram_gib); "
            "the run must fit 0.4 GiB less (8: 7.6 GiB usable)"
        ),
    ] = None,
    fit: Annotated[
        bool,
        typer.Option(
            help="Find the micro-batch, sequence length and checkpointing "
            "mode that fit, and print the --set changes"
        ),
    ] = False,
    gpu: Annotated[
        str | None,
        typer.Option(
            help="The card to time the run on: h200, h100, a100, 4090, 3090, 3070, ... "
            "(default: this machine's GPU, if it is in the table)"
        ),
    ] = None,
) -> None:
    """Estimate peak GPU memory of the training config (the whole process as the card counts it), and its
    compute (FLOPs per token, the built dataset's tokens per epoch, the time on a card) before loading
    anything heavy."""
    from forumtune.train.compute import GPU_KEYS, gpu_named, local_gpu
    from forumtune.train.estimate import estimate_run, print_estimate
    from forumtune.train.fit import print_fit
    from forumtune.train.plan import plan_memory
    from forumtune.train.plan_report import print_plan

    try:
        card = gpu_named(gpu) if gpu else local_gpu()
    except KeyError:
        raise typer.BadParameter(f"--gpu must be one of {', '.join(GPU_KEYS)}") from None
    cfg = _load(config, overrides)
    print_plan(plan_memory(cfg, vram), cfg, console)
    if fit:
        print_fit(cfg, vram, console)
    print_estimate(estimate_run(cfg, card), cfg, console)


@app.command()
def chat(
    config: ConfigArg,
    overrides: SetOption = None,
    source: SourceOption = None,
    compare: Annotated[
        bool, typer.Option(help="Side by side: the base model answers each question too")
    ] = False,
) -> None:
    """Streaming terminal chat with the fine-tuned model (/help lists the commands)."""
    from forumtune.chat.stage import run_chat

    cfg = _load(config, [*(overrides or []), *([f"chat.source={source}"] if source else [])])
    run_chat(cfg, cfg.run_dir, console, compare=compare)


@app.command()
def serve(
    config: ConfigArg,
    overrides: SetOption = None,
    source: SourceOption = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (sets chat.host)")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (sets chat.port)")] = None,
) -> None:
    """OpenAI-compatible HTTP server (/v1/chat/completions, /v1/completions) and a chat page at --host:--port."""
    from forumtune.chat.stage import run_serve

    flags = {"chat.source": source, "chat.host": host, "chat.port": port}
    flag_overrides = [f"{key}={value}" for key, value in flags.items() if value is not None]
    cfg = _load(config, [*(overrides or []), *flag_overrides])
    run_serve(cfg, cfg.run_dir, console)


@app.command()
def run(
    config: ConfigArg,
    overrides: SetOption = None,
    force: Annotated[bool, typer.Option(help="Rerun every stage")] = False,
    until: Annotated[str | None, typer.Option(help="Stop after this stage")] = None,
    restart: RestartOption = False,
) -> None:
    """Every stage in order (scrape, index, build, train, eval, merge, export), skipping what is done; an
    interrupted training continues from its last checkpoint."""
    from forumtune.pipeline import STAGE_NAMES, run_pipeline

    if until is not None and until not in STAGE_NAMES:
        raise typer.BadParameter(f"--until must be one of {STAGE_NAMES}")
    cfg = _load(config, overrides)
    run_pipeline(cfg, console, force=force, until=until, restart=restart)
    console.print(f"[bold green]done[/]: artifacts in {cfg.run_dir}")


# OS errors that come from the user's files or machine (a path that is missing, a folder that cannot be
# written, a full disk): one line, not a traceback. FORUMTUNE_DEBUG=1 shows the traceback.
USER_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


def report_error(message: str) -> None:
    errors.print(f"[bold red]error:[/] {escape(message)}")


def main() -> None:
    quiet_libraries()
    try:
        app()
    except ForumtuneError as error:
        report_error(str(error))
        sys.exit(2)
    except OSError as error:
        disk_full = error.errno == errno.ENOSPC
        if os.environ.get("FORUMTUNE_DEBUG") or not (isinstance(error, USER_OS_ERRORS) or disk_full):
            raise
        where = f": {error.filename}" if error.filename else ""
        report_error(f"{error.strerror or error}{where} (FORUMTUNE_DEBUG=1 shows where it happened)")
        sys.exit(1)


if __name__ == "__main__":
    main()
