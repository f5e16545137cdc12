"""TRL 1.15's DPO, ORPO and KTO losses on the tiny model and rows of the preference tests, for
tests/train/test_preference_trl.py to compare forumtune's with.

    TRITON_INTERPRET=1 python -m tests.train.trl_reference OUT_DIR

It runs in a process of its own: TRL's fused log-prob head is a Triton kernel, which runs on a CPU only in
Triton's interpreter, and Triton takes that setting when triton.language is first imported (earlier test
modules import it without). Each case writes the weights its trainer computed with (OUT_DIR/CASE.safetensors,
the whole PeftModel: the test loads them into the same architecture), its figures to OUT_DIR/CASE.json, and
DPO the adapter's gradients of its loss to OUT_DIR/dpo/grads.safetensors.
Each loss is TRL's own: the trainer's compute_loss on a batch from its own data collator, the reference
being the base with the adapter switched off (TRL's default for a LoRA model trained from scratch).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

from forumtune.records import IGNORE_INDEX
from tests.train.test_preference import VOCAB, answer_row, make_labelled, make_pairs, tokens

LORA = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": "all-linear"}
TOKENIZER = "builtin:tiny-llama"  # only to build the trainers; the rows are token ids
PAIR_PLACEHOLDER = [{"prompt": "a", "chosen": " b", "rejected": " c"}]
# (rows, TRL's beta: DPO's beta, ORPO's lambda, KTO's beta)
CASES = {
    "dpo": (lambda: make_pairs(6, seed=1), 0.5),
    "orpo": (lambda: make_pairs(5, seed=2), 0.3),
    "orpo_one_token_prompts": (lambda: one_token_prompt_pairs(5, seed=2), 0.3),
    "kto": (lambda: make_labelled(6, seed=3), 0.4),
}
KTO_WEIGHTS = (1.0, 1.5)


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config)


def lora_model() -> torch.nn.Module:
    """The tiny model with a LoRA adapter (random B: the policy differs from the base), any weights: the test
    loads a case's weights into it."""
    return get_peft_model(tiny_llama(), LoraConfig(**LORA, init_lora_weights=False))


def one_token_prompt_pairs(count: int, seed: int) -> list[dict]:
    """Pairs whose prompt is a single token (never a prediction target) and answers of 2-9 tokens."""
    rng = random.Random(seed)
    rows = []
    for number in range(count):
        prompt = tokens(rng, 1)
        chosen = answer_row(prompt, tokens(rng, rng.randint(2, 9)))
        rejected = answer_row(prompt, tokens(rng, rng.randint(2, 9)))
        rows.append(
            {
                "thread_id": number,
                "chosen_input_ids": chosen["input_ids"],
                "chosen_labels": chosen["labels"],
                "rejected_input_ids": rejected["input_ids"],
                "rejected_labels": rejected["labels"],
            }
        )
    return rows


def prompt_end(labels: list[int]) -> int:
    return next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)


def common_args(out: Path, rows: int) -> dict:
    return {
        "output_dir": str(out / "trainer"),
        "use_cpu": True,
        "report_to": "none",
        "per_device_train_batch_size": rows,
        "seed": 0,
    }


def dpo(out: Path, rows: list[dict], beta: float, tokenizer) -> tuple[torch.nn.Module, dict]:
    """DPOTrainer.compute_loss on its collator's batch, and the adapter's gradients of that loss."""
    from trl import DPOConfig, DPOTrainer

    trainer = DPOTrainer(
        model=tiny_llama(),
        args=DPOConfig(beta=beta, loss_type=["sigmoid"], **common_args(out, len(rows))),
        train_dataset=Dataset.from_list(PAIR_PLACEHOLDER),
        processing_class=tokenizer,
        peft_config=LoraConfig(**LORA, init_lora_weights=False),
    )
    examples = []
    for row in rows:
        start = prompt_end(row["chosen_labels"])
        examples.append(
            {
                "prompt_ids": row["chosen_input_ids"][:start],
                "chosen_ids": row["chosen_input_ids"][start:],
                "rejected_ids": row["rejected_input_ids"][start:],
            }
        )
    batch = trainer.data_collator(examples)
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = {n: p.grad for n, p in trainer.model.named_parameters() if p.grad is not None}
    save_file({n: g.contiguous() for n, g in grads.items()}, str(out / "grads.safetensors"))
    padded = int(batch["attention_mask"].sum()) < batch["attention_mask"].numel()
    return trainer.model, {"loss": float(loss), "padded": padded}


def orpo(out: Path, rows: list[dict], lam: float, tokenizer) -> tuple[torch.nn.Module, dict]:
    """ORPOTrainer.compute_loss (NLL of the chosen sequences + λ × the odds-ratio term), and the odds-ratio
    term alone from its odds_ratio_loss on its concatenated_forward's mean answer log-probs."""
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    torch.manual_seed(1)
    trainer = ORPOTrainer(
        model=lora_model(),
        args=ORPOConfig(beta=lam, max_length=64, remove_unused_columns=False, **common_args(out, len(rows))),
        train_dataset=Dataset.from_list(PAIR_PLACEHOLDER),
        processing_class=tokenizer,
    )
    features = []
    for row in rows:  # the tokenized form its tokenize_row makes: the prompt masked in the labels
        feature = {}
        for side in ("chosen", "rejected"):
            ids = row[f"{side}_input_ids"]
            feature |= {
                f"{side}_input_ids": ids,
                f"{side}_attention_mask": [1] * len(ids),
                f"{side}_labels": row[f"{side}_labels"],
            }
        features.append(feature)
    batch = trainer.data_collator(features)
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
        chosen, rejected, *_ = trainer.concatenated_forward(trainer.model, batch)
        ratio_losses, *_ = trainer.odds_ratio_loss(chosen, rejected)  # λ · log σ(log odds ratio) per pair
    return trainer.model, {"loss": float(loss), "odds_ratio_term": float(-ratio_losses.mean() / lam)}


def kto(out: Path, rows: list[dict], beta: float, tokenizer) -> tuple[torch.nn.Module, dict]:
    """KTOTrainer.compute_loss on its collator's batch, the KL rows being each prompt with the previous
    row's completion (the first with the last's), as its add_kl_completion_ids rotates them."""
    from trl import KTOConfig, KTOTrainer

    config = KTOConfig(
        beta=beta,
        desirable_weight=KTO_WEIGHTS[0],
        undesirable_weight=KTO_WEIGHTS[1],
        loss_type="kto",
        **common_args(out, len(rows)),
    )
    trainer = KTOTrainer(
        model=tiny_llama(),
        args=config,
        train_dataset=Dataset.from_list(
            [
                {"prompt": "a", "completion": " b", "label": True},
                {"prompt": "c", "completion": " d", "label": False},
            ]
        ),
        processing_class=tokenizer,
        peft_config=LoraConfig(**LORA, init_lora_weights=False),
    )
    completions = [row["input_ids"][prompt_end(row["labels"]) :] for row in rows]
    rotated = [completions[-1], *completions[:-1]]
    examples = [
        {
            "prompt_ids": row["input_ids"][: prompt_end(row["labels"])],
            "completion_ids": completion,
            "KL_completion_ids": other,
            "label": bool(row["label"]),
        }
        for row, completion, other in zip(rows, completions, rotated, strict=True)
    ]
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, trainer.data_collator(examples))
    return trainer.model, {"loss": float(loss), "kl": trainer._metrics["train"]["kl"][-1]}


def main() -> None:
    from forumtune.base_model import load_tokenizer

    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    runs = {"dpo": dpo, "orpo": orpo, "orpo_one_token_prompts": orpo, "kto": kto}
    for case, (make_rows, beta) in CASES.items():
        (out / case).mkdir(exist_ok=True)
        model, figures = runs[case](out / case, make_rows(), beta, load_tokenizer(TOKENIZER))
        state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
        save_file(state, str(out / f"{case}.safetensors"))
        (out / f"{case}.json").write_text(json.dumps(figures))


if __name__ == "__main__":
    main()
