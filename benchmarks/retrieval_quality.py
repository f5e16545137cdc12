"""Answers with and without the forum's passages in the prompt, on the demo's held-out questions.

    nice python benchmarks/retrieval_quality.py [CONFIG] [--top-k 4] [--tokens 512] [--max-new-tokens 64]

CONFIG (default examples/demo.yaml) must have been scraped and built (`forumtune build`) and indexed
(`forumtune index`). For each held-out question of dataset/eval.jsonl the model (model.base, the
built-in SmolLM2-135M-Instruct in the demo; with --adapter, a trained adapter on it) is scored twice on
the forum's own answer, with the plain question and with the question grounded as chat.retrieval
grounds it (retrieval/context.py), the passages never taken from the answer's own thread:

- eval loss: the mean negative log-likelihood of the forum's answer tokens (lower: the model finds the
  forum's answer likelier);
- token F1 of a greedy answer (repetition penalty 1.2, as eval) against the forum's answer.

With eval.same_questions (the demo names the generator's same_questions.json), it also checks retrieval as
the eval stage does (eval/retrieval_quality.py: hit@1, hit@k, MRR of the thread that asks the same
question) on the held-out questions and on every question of the dataset that another thread asks too.

Prints a table; writes benchmarks/results/retrieval_quality.json with every answer side by side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from forumtune.base_model import load_tokenizer, resolve_base_model
from forumtune.config import load_config
from forumtune.data.encode import encode_conversations
from forumtune.eval.generate import GenerationSettings, generate_answers
from forumtune.eval.reference import token_f1
from forumtune.eval.retrieval_quality import check_retrieval, read_groups
from forumtune.layout import RunLayout
from forumtune.records import read_jsonl
from forumtune.retrieval.context import fit_to_budget, question_with_context
from forumtune.retrieval.retriever import Retriever

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results" / "retrieval_quality.json"


def answer_loss(model: torch.nn.Module, tokenizer: Any, messages: list[dict[str, str]]) -> float:
    example = encode_conversations(tokenizer, [messages])[0]
    ids = torch.tensor([example.input_ids])
    labels = torch.tensor([example.labels])
    with torch.no_grad():
        return float(model(input_ids=ids, labels=labels).loss)


def grounded_prompt(
    retriever: Retriever, tokenizer: Any, question: str, thread_id: int, top_k: int, budget: int
) -> tuple[str, list[dict[str, Any]]]:
    found = retriever.search(question, top_k, exclude_threads={thread_id})
    sources = fit_to_budget(
        found, budget, lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
    )
    return question_with_context(question, sources), [
        {"title": s.title, "url": s.url, "thread_id": r.passage.thread_id} for s, r in zip(sources, found)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", type=Path, nargs="?", default=ROOT / "examples" / "demo.yaml")
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.config)
    layout = RunLayout.of(config)
    tokenizer = load_tokenizer(config.model.base, config.build.chat_template)
    model = AutoModelForCausalLM.from_pretrained(resolve_base_model(config.model.base)).eval()
    retriever = Retriever.open(layout.search_index, layout.vector_index)
    rows = list(read_jsonl(layout.dataset.eval))
    titles = {row["thread_id"]: row["title"] for row in rows}
    started = time.perf_counter()
    samples: list[dict[str, Any]] = []
    for row in rows:
        question = next(m["content"] for m in row["messages"] if m["role"] == "user")
        answer = next(m["content"] for m in row["messages"] if m["role"] == "assistant")
        system = [m for m in row["messages"] if m["role"] == "system"]
        grounded, sources = grounded_prompt(
            retriever, tokenizer, question, row["thread_id"], args.top_k, args.tokens
        )
        plain_messages = [*system, {"role": "user", "content": question}]
        with_messages = [*system, {"role": "user", "content": grounded}]
        samples.append(
            {
                "thread_id": row["thread_id"],
                "title": titles[row["thread_id"]],
                "question": question,
                "answer": answer,
                "sources": sources,
                "loss_without": answer_loss(
                    model, tokenizer, [*plain_messages, {"role": "assistant", "content": answer}]
                ),
                "loss_with": answer_loss(
                    model, tokenizer, [*with_messages, {"role": "assistant", "content": answer}]
                ),
                "prompts": (plain_messages, with_messages),
            }
        )
    settings = GenerationSettings(args.max_new_tokens, 0.0, 1.0, config.seed, 4, repetition_penalty=1.2)
    for key, index in (("without", 0), ("with", 1)):
        answers = generate_answers(model, tokenizer, [s["prompts"][index] for s in samples], settings)
        for sample, generated in zip(samples, answers):
            sample[f"answer_{key}"] = generated.text
            sample[f"f1_{key}"] = token_f1(generated.text, sample["answer"])
    for sample in samples:
        del sample["prompts"]
    same_questions = None
    if config.eval.same_questions is not None:
        groups = read_groups(config.eval.same_questions)
        every_row = list(read_jsonl(layout.dataset.train)) + rows
        same_questions = {
            "held_out": check_retrieval(retriever, rows, groups, args.top_k),
            "all": check_retrieval(retriever, every_row, groups, args.top_k),
        }
    summary = {
        key: round(statistics.mean(s[key] for s in samples), 4)
        for key in ("loss_without", "loss_with", "f1_without", "f1_with")
    }
    summary["questions"] = len(samples)
    summary["mode"] = retriever.mode
    summary["seconds"] = round(time.perf_counter() - started, 1)
    report = {
        "config": str(args.config),
        "model": config.model.base,
        "top_k": args.top_k,
        "tokens": args.tokens,
        "summary": summary,
        "same_questions": same_questions,
        "samples": samples,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(
        f"{len(samples)} held-out answers, {retriever.mode} retrieval, top {args.top_k} in {args.tokens} tokens"
    )
    print(
        f"eval loss of the forum's answer: without {summary['loss_without']:.4f}  with {summary['loss_with']:.4f}"
    )
    print(
        f"token F1 of greedy answers:      without {summary['f1_without']:.4f}  with {summary['f1_with']:.4f}"
    )
    for scope, checked in (same_questions or {}).items():
        for mode, scores in checked["modes"].items():
            if checked["questions"]:
                print(
                    f"same-question thread found, {scope} ({checked['questions']} questions), {mode}: "
                    f"hit@1 {scores['hit_at_1']:.0%}  hit@{args.top_k} {scores['hit_at_k']:.0%}  "
                    f"MRR {scores['mrr']:.3f}"
                )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
