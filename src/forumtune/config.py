"""The YAML schema: every config key, its type, its default. The one place defaults live."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from forumtune.errors import ConfigError

BUILTIN_TINY_MODEL = "builtin:tiny-llama"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ScrapeConfig(Section):
    url: str = Field(description="Thread-list URL of the forum (or a path when serve_dir is set).")
    serve_dir: Path | None = Field(
        None, description="Serve this folder on 127.0.0.1 and scrape it (the bundled demo forum)."
    )
    site: str = Field("demo", description="Site profile that knows the forum's markup.")
    max_list_pages: int | None = Field(None, ge=1)
    max_threads: int | None = Field(None, ge=1)
    max_pages_per_thread: int = Field(10, ge=1)
    requests_per_second: float = Field(1.0, gt=0, description="Per-host rate limit.")
    concurrency: int = Field(2, ge=1, le=32)
    timeout_s: float = Field(20.0, gt=0)
    retries: int = Field(3, ge=0, le=10)
    max_page_bytes: int = Field(5_000_000, ge=10_000)
    respect_robots: bool = True
    user_agent: str = "forumtune/0.1 (+https://github.com/forumtune/forumtune)"


class BuildConfig(Section):
    pairing: Literal["qa"] = Field("qa", description="qa: the opening post is the question, replies answer.")
    answers_per_question: int = Field(3, ge=1, description="How many replies of a thread become answers.")
    min_answer_chars: int = Field(40, ge=0)
    min_question_chars: int = Field(20, ge=0)
    max_seq_len: int = Field(512, ge=32)
    eval_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    keep_urls: bool = Field(False, description="Keep URLs as text; when false they are dropped.")
    system_prompt: str | None = None
    chat_template: str | None = Field(
        None, description="Named template (mistral, llama2, chatml) instead of the tokenizer's own."
    )
    train_on_inputs: bool = False


class ModelConfig(Section):
    base: str = Field(BUILTIN_TINY_MODEL, description="Hub id or local dir of the base model.")
    load_in_4bit: bool = True
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"


class LoraConfig(Section):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: str | list[str] = "all-linear"
    modules_to_save: list[str] | None = Field(
        None, description="Modules trained in full beside the adapter, e.g. [lm_head]; saved with it."
    )


class TrainConfig(Section):
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps; when unset, `epochs` decides.")
    epochs: float = Field(1.0, gt=0)
    micro_batch_size: int = Field(2, ge=1)
    grad_accum_steps: int = Field(4, ge=1)
    learning_rate: float = Field(2e-4, gt=0)
    lr_scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = Field(10, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    optimizer: Literal["paged_adamw_8bit", "adamw_8bit", "adamw"] = "paged_adamw_8bit"
    gradient_checkpointing: bool = True
    eval_every: int = Field(25, ge=1, description="Optimizer steps between eval-loss measurements.")
    save_every: int = Field(50, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"


class EvalConfig(Section):
    num_samples: int = Field(8, ge=0, description="Held-out questions answered by base and fine-tuned.")
    max_new_tokens: int = Field(96, ge=1)
    temperature: float = Field(0.0, ge=0.0, description="0 means greedy decoding.")


class MergeConfig(Section):
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"


class ExportConfig(Section):
    gguf_type: Literal["f32", "f16", "bf16", "q8_0"] = "f16"


class ChatConfig(Section):
    system_prompt: str | None = None
    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.7, ge=0.0)
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_key: str | None = None


class PlanConfig(Section):
    vram_gib: float = Field(8.0, gt=0, description="Memory of the card the run must fit.")


class Config(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    runs_dir: Path = Path("runs")
    seed: int = 42
    scrape: ScrapeConfig
    build: BuildConfig = BuildConfig()
    model: ModelConfig = ModelConfig()
    lora: LoraConfig = LoraConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    merge: MergeConfig = MergeConfig()
    export: ExportConfig = ExportConfig()
    chat: ChatConfig = ChatConfig()
    plan: PlanConfig = PlanConfig()

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.name

    @field_validator("runs_dir")
    @classmethod
    def _expand_runs_dir(cls, value: Path) -> Path:
        return value.expanduser()

    @model_validator(mode="after")
    def _check_build_template(self) -> Config:
        from forumtune.data.templates import NAMED_TEMPLATES

        name = self.build.chat_template
        if name is not None and name not in NAMED_TEMPLATES:
            raise ValueError(f"build.chat_template {name!r} is unknown; choose one of {sorted(NAMED_TEMPLATES)}")
        return self


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one `section.key=value` override; the value is parsed as YAML (numbers, booleans, lists)."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set train.max_steps=30")
    dotted, _, text = assignment.partition("=")
    keys = dotted.strip().split(".")
    node = raw
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {key!r} is not a section")
        node = child
    node[keys[-1]] = yaml.safe_load(text) if text.strip() else None


def _format_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid config"]
    for problem in error.errors():
        key = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            message = "unknown key (check its spelling; `forumtune config` shows every key)"
        elif problem["type"] == "missing":
            message = "required key is missing"
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


def _resolve_paths(raw: dict[str, Any], base_dir: Path) -> None:
    """Relative paths in a config file are relative to that file, not to the shell's directory."""
    if "runs_dir" in raw and raw["runs_dir"] is not None:
        raw["runs_dir"] = str(base_dir / Path(str(raw["runs_dir"])).expanduser())
    else:
        raw["runs_dir"] = str(base_dir / "runs")
    scrape = raw.get("scrape")
    if isinstance(scrape, dict) and scrape.get("serve_dir"):
        scrape["serve_dir"] = str(base_dir / Path(str(scrape["serve_dir"])).expanduser())
    model = raw.get("model")
    if isinstance(model, dict) and isinstance(model.get("base"), str):
        base = model["base"]
        if base.startswith("~"):
            model["base"] = str(Path(base).expanduser())
        elif base.startswith(("./", "../")):
            model["base"] = str(base_dir / base)


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read, override and validate a YAML config; any problem raises ConfigError before work starts."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist (try examples/demo.yaml)") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (name, scrape, train, ...)")
    for assignment in overrides or []:
        apply_override(raw, assignment)
    _resolve_paths(raw, path.resolve().parent)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, str(path))) from None


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
