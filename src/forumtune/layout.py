"""Every path of a run directory, named in one place.

A run directory (`runs_dir/name`) holds what each stage wrote, and a stage finds its inputs here by
name, never by asking another stage. The layout below is also the list of artifacts the pipeline
checks when it decides what to rerun (pipeline.STAGES).

    config.yaml                 the resolved config of the last command
    forum.sqlite                scrape → build, index: threads and posts (forumtune.forum_store)
    index.sqlite                index → chat, serve: passages and their BM25 index (forumtune.retrieval)
    index.vectors.usearch       index → chat, serve: the passages' dense vectors, when an embedding model is set
    dataset/                    build → train, eval: {train,eval}.jsonl rows (forumtune.records), stats.json
    checkpoints/step-NNNNNN/    train: resumable state; eval reads its adapter/ (eval loss per checkpoint)
    checkpoints/best/           train: the adapter of the lowest eval loss so far
    checkpoints/settings.json   train: the settings a training's checkpoints were made with (resume checks them)
    previous/<time>/            train --restart: an earlier training's checkpoints and logs, set aside
    adapter/                    train → eval, merge, export, chat: the PEFT adapter and the tokenizer
    dpo/ (orpo/, kto/)          train_then (train.then): the second training's checkpoints/, adapter/,
                                metrics.csv, train_summary.json; its adapter is the one eval, merge, export
                                and chat take, and the first one (adapter/) is its reference
    metrics.csv                 train → eval: one row per logged step and eval (forumtune.metrics_log)
    train_summary.json          train → eval report
    eval/metrics.json, eval/samples.jsonl, loss.png, report.html     eval
    merged/                     merge → export, chat: a plain Hugging Face model dir
    export/NAME-TYPE.gguf, export/NAME-lora.gguf, export/Modelfile   export → chat
    .stages/STAGE.json          the pipeline's stamps: which settings made each stage's outputs
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forumtune.config import Config

CHECKPOINT_PREFIX = "step-"
BEST_CHECKPOINT = "best"
SPLITS = ("train", "eval")


@dataclass(frozen=True)
class RunLayout:
    root: Path
    name: str | None = None  # config.name: the export files are named after it
    gguf_type: str | None = None  # export.gguf_type: part of the GGUF file's name
    second_method: str | None = None  # train.then's method: the run trains twice, the second in <method>/

    @classmethod
    def of(cls, config: Config, root: Path | None = None) -> RunLayout:
        """The layout of `config`'s run dir (or of `root`, a run dir the caller chose for it)."""
        second = config.train.second_training()
        return cls(
            config.run_dir if root is None else root,
            config.name,
            config.export.gguf_type,
            second.method if second is not None else None,
        )

    # --- train.then: a second training from the first one's adapter
    @property
    def second(self) -> RunLayout | None:
        """The second training's own run dir (checkpoints, adapter, metrics), or None without train.then."""
        if self.second_method is None:
            return None
        return RunLayout(self.root / self.second_method, self.name, self.gguf_type)

    @property
    def final(self) -> RunLayout:
        """The layout whose adapter/ is the run's result: the second training's, else this one."""
        return self.second or self

    # --- the run itself
    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    @property
    def stamps(self) -> Path:
        return self.root / ".stages"

    def stamp(self, stage: str) -> Path:
        return self.stamps / f"{stage}.json"

    # --- scrape
    @property
    def forum_store(self) -> Path:
        return self.root / "forum.sqlite"

    # --- index
    @property
    def search_index(self) -> Path:
        """Beside the store: the cleaned posts as passages, with their full-text index."""
        return self.root / "index.sqlite"

    @property
    def vector_index(self) -> Path:
        return self.root / "index.vectors.usearch"

    # --- build
    @property
    def dataset(self) -> DatasetFiles:
        return DatasetFiles(self.root / "dataset")

    # --- train
    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / BEST_CHECKPOINT

    @property
    def adapter(self) -> Path:
        return self.root / "adapter"

    @property
    def adapter_weights(self) -> Path:
        return self.adapter / "adapter_model.safetensors"

    @property
    def adapter_config(self) -> Path:
        return self.adapter / "adapter_config.json"

    @property
    def metrics_csv(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def train_summary(self) -> Path:
        return self.root / "train_summary.json"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def training_outputs(self) -> tuple[Path, ...]:
        """One training's own outputs, set aside together when a new training starts from step 0."""
        return (self.checkpoints, self.metrics_csv, self.train_summary, self.tensorboard)

    @property
    def previous_trainings(self) -> Path:
        """Where `--restart` sets earlier trainings aside (previous/<time>/), so nothing is deleted."""
        return self.root / "previous"

    @property
    def wandb_id(self) -> Path:
        return self.root / "wandb_run_id.txt"

    # --- eval
    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    @property
    def eval_metrics(self) -> Path:
        return self.eval_dir / "metrics.json"

    @property
    def eval_samples(self) -> Path:
        return self.eval_dir / "samples.jsonl"

    @property
    def loss_png(self) -> Path:
        return self.root / "loss.png"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    # --- merge and export
    @property
    def merged(self) -> Path:
        return self.root / "merged"

    @property
    def merged_config(self) -> Path:
        return self.merged / "config.json"

    @property
    def export_dir(self) -> Path:
        return self.root / "export"

    @property
    def gguf(self) -> Path:
        """export/<name>-<gguf_type>.gguf, the merged model for llama.cpp and Ollama."""
        return self.export_dir / f"{self._named('gguf')}-{self.gguf_type}.gguf"

    @property
    def lora_gguf(self) -> Path:
        return self.export_dir / f"{self._named('lora_gguf')}-lora.gguf"

    @property
    def modelfile(self) -> Path:
        return self.export_dir / "Modelfile"

    def _named(self, what: str) -> str:
        if self.name is None or self.gguf_type is None:
            raise ValueError(
                f"RunLayout.{what} needs the run's name and export.gguf_type: use RunLayout.of(config)"
            )
        return self.name


@dataclass(frozen=True)
class DatasetFiles:
    """A built dataset dir (the run's dataset/, or the staging dir it is written in)."""

    dir: Path

    def split(self, name: str) -> Path:
        """train.jsonl or eval.jsonl: tokenized rows (forumtune.records)."""
        return self.dir / f"{name}.jsonl"

    @property
    def train(self) -> Path:
        return self.split("train")

    @property
    def eval(self) -> Path:
        return self.split("eval")

    def preferences(self, name: str) -> Path:
        """preferences_train.jsonl or preferences_eval.jsonl: preference pairs or labelled answers
        (forumtune.records.PreferenceRow, LabelledRow) for train.method dpo, orpo and kto."""
        return self.dir / f"preferences_{name}.jsonl"

    @property
    def stats(self) -> Path:
        return self.dir / "stats.json"

    def exported(self, split: str, shape: str) -> Path:
        """build.export_formats: <split>.<format>.jsonl."""
        return self.dir / f"{split}.{shape}.jsonl"

    @property
    def length_histogram(self) -> Path:
        return self.dir / "lengths.png"


def checkpoint_dirs(root: Path) -> list[Path]:
    """The complete step-N checkpoints under `root`, oldest first (a half-written one has no state.json)."""
    if not root.is_dir():
        return []
    found = [
        p
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX) and (p / "state.json").exists()
    ]
    return sorted(found, key=checkpoint_step)


def checkpoint_dir(root: Path, step: int) -> Path:
    """Where the checkpoint of optimizer step `step` goes under `root` (50 → step-000050)."""
    return root / f"{CHECKPOINT_PREFIX}{step:06d}"


def checkpoint_step(path: Path) -> int:
    """The optimizer step a checkpoint dir was saved at, from its name (step-000050 → 50)."""
    return int(path.name[len(CHECKPOINT_PREFIX) :])


def checkpoint_adapter(path: Path) -> Path:
    """The PEFT adapter dir inside a checkpoint (step-N or best)."""
    return path / "adapter"
