"""An evaluated run on the tiny demo model: a held-out split written here, a real LoRA adapter and a
checkpoint (random, so the two models differ), a metrics.csv, and a tiny sentence-embedding model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from rich.console import Console
from transformers import AutoModelForCausalLM, BertConfig, BertModel, BertTokenizerFast

from forumtune.base_model import load_tokenizer, resolve_base_model
from forumtune.config import Config, load_config
from forumtune.data.encode import encode_conversation
from forumtune.metrics_log import MetricsLog
from forumtune.pipeline import get_stage, run_stage
from tests.conftest import write_config

HELD_OUT = [
    ("Best wax for spring slush?", "A warm-temp wax, and brush the structure out well."),
    (
        "How do I stop sitting back in the bumps?",
        "Shins on the tongues, hands forward, look two bumps ahead.",
    ),
    (
        "Which DIN for 80 kg and type II?",
        "Look it up on the chart and have a shop set it.\nThis post was edited on 3 March 2024 by skibum",
    ),
    ("Are rockered skis worse on ice?", "A bit, less edge in contact. Keep them sharp and it is fine."),
    ("Helmet or beanie for park laps?", "Helmet. Always. Falls on rails hurt <b>a lot</b>."),
]
MAX_NEW_TOKENS = 6


@dataclass
class EvaluatedRun:
    config: Config
    run_dir: Path
    records: list[dict]
    checkpoint_step: int


def held_out_records(tokenizer) -> list[dict]:
    records = []
    for thread_id, (question, answer) in enumerate(HELD_OUT):
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        example = encode_conversation(tokenizer, messages)
        records.append(
            {
                "thread_id": thread_id,
                "title": question,
                "messages": messages,
                "input_ids": example.input_ids,
                "labels": example.labels,
            }
        )
    return records


def held_out_pairs(tokenizer) -> list[dict]:
    """Each held-out question with its forum answer preferred over the next question's answer."""
    pairs = []
    for thread_id, (question, answer) in enumerate(HELD_OUT):
        other = HELD_OUT[(thread_id + 1) % len(HELD_OUT)][1]
        prompt = [{"role": "user", "content": question}]
        good = encode_conversation(tokenizer, [*prompt, {"role": "assistant", "content": answer}])
        bad = encode_conversation(tokenizer, [*prompt, {"role": "assistant", "content": other}])
        pairs.append(
            {
                "thread_id": thread_id,
                "prompt": prompt,
                "chosen": answer,
                "rejected": other,
                "chosen_input_ids": good.input_ids,
                "chosen_labels": good.labels,
                "rejected_input_ids": bad.input_ids,
                "rejected_labels": bad.labels,
            }
        )
    return pairs


def loss_by_hand(model, records) -> float:
    """Written out by hand, not through forumtune: the mean negative log-likelihood of every answer token
    (label != -100), one unpadded example at a time."""
    total, count = 0.0, 0
    for record in records:
        with torch.no_grad():
            log_probs = torch.log_softmax(
                model(torch.tensor([record["input_ids"]])).logits[0].double(), dim=-1
            )
        for position in range(1, len(record["input_ids"])):
            target = record["labels"][position]
            if target != -100:
                total -= float(log_probs[position - 1, target])
                count += 1
    return total / count


def save_random_adapter(out_dir: Path, seed: int) -> None:
    """A LoRA adapter of the real architecture with non-zero weights, so it moves the logits."""
    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(resolve_base_model("builtin:tiny-llama"))
    peft_config = LoraConfig(
        r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM"
    )
    get_peft_model(base, peft_config).save_pretrained(out_dir)


def save_tiny_embedding_model(out_dir: Path) -> Path:
    words = sorted({w for q, a in HELD_OUT for w in (q + " " + a).lower().replace(".", " ").split()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(out_dir / "vocab.txt")).save_pretrained(out_dir)
    torch.manual_seed(0)
    BertModel(
        BertConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
        )
    ).save_pretrained(out_dir)
    return out_dir


def make_run(
    root: Path, embedding_dir: Path, adapter_seed: int, name: str, model: dict | None = None, **eval_settings
) -> EvaluatedRun:
    config_path = write_config(
        root,
        model=model or {},
        eval={
            "num_samples": len(HELD_OUT),
            "max_new_tokens": MAX_NEW_TOKENS,
            "batch_size": len(HELD_OUT),
            "embedding_model": str(embedding_dir),
            **eval_settings,
        },
    )
    config_path.write_text(config_path.read_text().replace("name: demo", f"name: {name}"))
    config = load_config(config_path)
    run_dir = config.run_dir
    (run_dir / "dataset").mkdir(parents=True)
    records = held_out_records(load_tokenizer(config.model.base))
    (run_dir / "dataset" / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    pairs = held_out_pairs(load_tokenizer(config.model.base))
    (run_dir / "dataset" / "preferences_eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pairs))
    (run_dir / "dataset" / "stats.json").write_text(
        json.dumps({"eval_examples": len(records), "removed": {"edit_notices": 0}})
    )
    log = MetricsLog(run_dir / "metrics.csv")
    for step in range(1, 5):
        log.write(step=step, split="train", loss=8.0 - step / 4, tokens=400, tokens_per_s=100.0 * step)
    log.write(step=4, split="eval", loss=7.2)
    (run_dir / "train_summary.json").write_text(
        json.dumps({"steps": 4, "seconds": 12.5, "peak_memory_mib": 0})
    )
    save_random_adapter(run_dir / "adapter", seed=adapter_seed)
    checkpoint = run_dir / "checkpoints" / "step-000002"
    save_random_adapter(checkpoint / "adapter", seed=adapter_seed + 1)
    (checkpoint / "state.json").write_text(json.dumps({"step": 2, "micro_batches_consumed": 4}))
    run_stage(get_stage("eval"), config, Console(quiet=True))  # as `forumtune eval` runs it
    return EvaluatedRun(config, run_dir, records, checkpoint_step=2)


@pytest.fixture(scope="session")
def embedding_dir(tmp_path_factory) -> Path:
    return save_tiny_embedding_model(tmp_path_factory.mktemp("embedding") / "tiny-bert")


@pytest.fixture(scope="session")
def evaluated_run(tmp_path_factory, embedding_dir) -> EvaluatedRun:
    """With the demo's model settings: 4-bit NF4 base, fp32 compute."""
    return make_run(tmp_path_factory.mktemp("run-a"), embedding_dir, adapter_seed=1, name="alpha")


@pytest.fixture(scope="session")
def second_run(tmp_path_factory, embedding_dir) -> EvaluatedRun:
    """Unquantized (4-bit matmuls are slow on a CPU), fewer questions, no checkpoints: cheap to compare with."""
    return make_run(
        tmp_path_factory.mktemp("run-b"),
        embedding_dir,
        adapter_seed=7,
        name="beta",
        model={"load_in_4bit": False},
        num_samples=2,
        batch_size=2,
        checkpoints=False,
    )


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Screenshots land here (gitignored) so they outlive the test run."""
    path = Path(__file__).resolve().parents[1] / "artifacts"
    path.mkdir(exist_ok=True)
    return path
