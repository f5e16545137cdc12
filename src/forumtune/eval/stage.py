"""The `eval` stage: eval loss of base and fine-tuned, answers side by side with checks, curves, report.html.

A run that trains twice (train.then) is compared three ways: the base, the first training's model (its
adapter loaded beside the final one as FIRST) and the final one."""

from __future__ import annotations

import contextlib
import json
import statistics
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from rich.console import Console
from rich.markup import escape
from transformers import PreTrainedTokenizerBase

from forumtune.base_model import base_model_note, load_tokenizer
from forumtune.config import Config
from forumtune.errors import EvalError
from forumtune.eval.artifacts import Answer, artifact_counts, check_answer, check_model_answer
from forumtune.eval.embedding import SentenceEmbedder, embedding_similarities, find_embedding_model
from forumtune.eval.generate import (
    GenerationSettings,
    generate_answers,
    generation_settings,
    prompt_messages,
)
from forumtune.eval.losses import (
    base_and_tuned_losses,
    checkpoint_losses,
    mean_token_loss,
    perplexity,
    trained_tokens,
)
from forumtune.eval.plots import RunCurves, plot_loss_curves
from forumtune.eval.preferences import preference_metrics
from forumtune.eval.reference import rouge_l, token_f1
from forumtune.eval.report import write_run_report
from forumtune.eval.retrieval_quality import retrieval_quality
from forumtune.eval.timing import PhaseTimer
from forumtune.layout import RunLayout
from forumtune.models import adapter_active, load_adapter_model, pick_device
from forumtune.records import (
    DatasetRow,
    EvalSample,
    ModelAnswer,
    ModelScores,
    PreferenceRow,
    read_jsonl,
    read_rows,
    write_eval_samples,
)


def held_out_questions(records: list[DatasetRow], count: int) -> list[DatasetRow]:
    """One record per held-out thread first, so the questions differ; then more from the same threads."""
    seen: set[int] = set()
    first = [r for r in records if not (r["thread_id"] in seen or seen.add(r["thread_id"]))]
    chosen_ids = {id(r) for r in first}
    return (first + [r for r in records if id(r) not in chosen_ids])[:count]


def held_out_pairs(path: Path) -> list[PreferenceRow]:
    """The held-out preference pairs (labelled KTO rows have no pair to rank); none without build.preferences."""
    return [row for row in read_jsonl(path) if "chosen" in row] if path.exists() else []


FIRST = "first"  # the adapter name of the first training's model in a run that trains twice


def compared_models(config: Config) -> list[tuple[str, str]]:
    """The models the report sets side by side: (key in results and samples, label)."""
    second = config.train.second_training()
    if second is None:
        return [("base", "base model"), ("tuned", "fine-tuned")]
    first = config.train.method.upper()
    return [("base", "base model"), (FIRST, first), ("tuned", f"{first} + {second.method.upper()}")]


def run_eval(config: Config, run_dir: Path, console: Console) -> dict[str, Any]:
    try:
        return evaluate_run(config, run_dir, console)
    except torch.cuda.OutOfMemoryError:
        raise EvalError(
            "the GPU ran out of memory during eval; lower eval.batch_size (generation), "
            "eval.loss_batch_size (eval loss batches) or eval.max_new_tokens"
        ) from None


def evaluate_run(config: Config, run_dir: Path, console: Console) -> dict[str, Any]:
    paths = RunLayout.of(config, run_dir)
    if not paths.final.adapter_config.exists():
        command = "run" if paths.second else "train"
        raise EvalError(f"no adapter at {paths.final.adapter}: run `forumtune {command}` first")
    eval_records = read_rows(paths.dataset.eval)
    if not eval_records:
        raise EvalError("the eval split is empty; set build.eval_fraction above 0 and rebuild")
    embedding_dir = find_embedding_model(config.eval.embedding_model)
    device = pick_device(config.eval.device, key="eval.device")
    timer = PhaseTimer(device)
    with timer.phase("load model"):
        tokenizer = load_tokenizer(config.model.base, config.build.chat_template)
        model = load_adapter_model(config.model, paths.final.adapter, device)
        if paths.second is not None:
            model.load_adapter(str(paths.adapter), adapter_name=FIRST)
    batch, pad_id = config.eval.loss_batch_size, tokenizer.pad_token_id
    with timer.phase("eval loss, base and fine-tuned"):
        base_loss, tuned_loss = base_and_tuned_losses(model, eval_records, batch, pad_id, device)
        first_loss = None
        if paths.second is not None:
            with adapter_active(model, FIRST):
                first_loss = mean_token_loss(model, eval_records, batch, pad_id, device)
    preferences = held_out_pairs(paths.dataset.preferences("eval"))
    preference_results = None
    if preferences:
        tuned_config = config.second_training(paths.adapter) or config  # its reference: the first adapter
        first = FIRST if paths.second is not None else None
        with timer.phase("preference accuracy"):
            preference_results = preference_metrics(
                model, preferences, tuned_config, batch, pad_id, device, first=first
            )
    checkpoints: list[dict[str, float]] = []
    if config.eval.checkpoints:
        with timer.phase("eval loss, checkpoints"):
            checkpoints = checkpoint_losses(model, paths.checkpoints, eval_records, batch, pad_id, device)
    questions = held_out_questions(eval_records, config.eval.num_samples)
    samples, generation = answer_questions(
        model,
        tokenizer,
        questions,
        generation_settings(config),
        timer,
        greedy_baseline=config.eval.greedy_baseline,
        first=paths.second is not None,
    )
    with timer.phase("reference metrics"):
        compared = tuple(key for key, _ in compared_models(config))
        reference = score_samples(samples, embedding_dir, device, compared)
    retrieval = None
    if config.checks_retrieval:
        with timer.phase("retrieval quality"):
            retrieval = retrieval_quality(config, paths, eval_records, device)
    results = {
        "models": compared_models(config),
        "base_eval_loss": base_loss,
        "tuned_eval_loss": tuned_loss,
        "base_perplexity": perplexity(base_loss),
        "tuned_perplexity": perplexity(tuned_loss),
        **(
            {"first_eval_loss": first_loss, "first_perplexity": perplexity(first_loss)}
            if first_loss is not None
            else {}
        ),
        "eval_examples": len(eval_records),
        "eval_trained_tokens": trained_tokens(eval_records),
        "checkpoints": checkpoints,
        "samples": len(samples),
        "reference": reference,
        "embedding_model": str(embedding_dir) if embedding_dir else None,
        "artifacts": {
            "forum": artifact_counts([s.reference_flags for s in samples]),
            **{
                key: artifact_counts([s.answers[key].flags for s in samples])
                for key in generation["answered_by"]
            },
        },
        "generation": generation,
        "timings_s": timer.seconds,
        "peak_memory_mib": timer.peak_memory_mib(),
        "device": device.type,
        **({"preferences": preference_results} if preference_results else {}),
        **({"retrieval": retrieval} if retrieval else {}),
    }
    write_outputs(config, paths, results, samples)
    console.print(
        f"eval loss: base {base_loss:.4f} → fine-tuned {tuned_loss:.4f}; answers with an artifact: "
        f"base {results['artifacts']['base']['any']}/{len(samples)}, fine-tuned "
        f"{results['artifacts']['tuned']['any']}/{len(samples)}; report at "
        f"{escape(str(paths.report))}"
    )
    if preference_results:
        console.print(
            f"preference accuracy on {preference_results['pairs']} held-out pairs: base "
            f"{preference_results['base_logprob_accuracy']:.1%} → fine-tuned "
            f"{preference_results['tuned_logprob_accuracy']:.1%} (log-prob), implicit reward "
            f"{preference_results['tuned_reward_accuracy']:.1%}, margin {preference_results['reward_margin']:.3f}; "
            f"per answer token: base {preference_results['base_per_token_accuracy']:.1%} → fine-tuned "
            f"{preference_results['tuned_per_token_accuracy']:.1%}"
        )
    if retrieval:
        console.print(retrieval_line(retrieval))
    return results


def retrieval_line(retrieval: dict[str, Any]) -> str:
    if not retrieval["questions"]:
        return "retrieval check: no held-out question has a same-question thread (eval.same_questions)"
    scores = ", ".join(
        f"{mode} hit@{retrieval['top_k']} {m['hit_at_k']:.0%}, MRR {m['mrr']:.2f}"
        for mode, m in retrieval["modes"].items()
    )
    return f"retrieval on {retrieval['questions']} held-out questions asked again in another thread: {scores}"


# Who answers each question: the key samples and results use, the adapter (None: off; FIRST: the first
# training's, in a run that trains twice), and which decoding.
ANSWER_RUNS = (
    ("base", None, "configured"),
    (FIRST, FIRST, "configured"),
    ("tuned", "tuned", "configured"),
    ("base_greedy", None, "greedy"),
    ("tuned_greedy", "tuned", "greedy"),
)
PHASES = {
    "base": "generate, base",
    FIRST: "generate, first training",
    "tuned": "generate, fine-tuned",
    "base_greedy": "generate, base, plain greedy",
    "tuned_greedy": "generate, fine-tuned, plain greedy",
}


def answer_questions(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: list[DatasetRow],
    settings: GenerationSettings,
    timer: PhaseTimer,
    *,
    greedy_baseline: bool = False,
    first: bool = False,
) -> tuple[list[EvalSample], dict[str, Any]]:
    """Base and fine-tuned answers side by side with the forum's, each checked for artifacts; with
    `greedy_baseline`, also both models' plain greedy answers, so what the decoding settings hide is seen;
    with `first`, the first training's answers too (its adapter loaded as FIRST)."""
    prompts = [prompt_messages(r) for r in questions]
    runs = [
        run
        for run in ANSWER_RUNS
        if (run[2] == "configured" or (greedy_baseline and not settings.is_plain_greedy))
        and (first or run[1] != FIRST)
    ]
    answers: dict[str, list[ModelAnswer]] = {}
    for key, adapter_name, decoding in runs:
        adapter = (
            model.disable_adapter()
            if adapter_name is None
            else adapter_active(model, FIRST)
            if adapter_name == FIRST
            else contextlib.nullcontext()
        )
        with timer.phase(PHASES[key]), adapter:
            answers[key] = generate_answers(
                model, tokenizer, prompts, settings if decoding == "configured" else settings.plain_greedy()
            )
    specials = [
        t for t in tokenizer.all_special_tokens if t not in (tokenizer.pad_token, tokenizer.unk_token)
    ]
    samples = []
    for index, (record, prompt) in enumerate(zip(questions, prompts)):
        reference = record["messages"][-1]["content"]
        sample = EvalSample(
            question=prompt[-1]["content"],
            reference=reference,
            reference_flags=check_answer(Answer(reference), specials),
        )
        for key, model_answers in answers.items():
            answer = model_answers[index]
            answer.flags = check_model_answer(answer, specials)
            sample.answers[key] = answer
        samples.append(sample)
    generation = {
        "settings": settings.describe(),
        "decoding": settings.decoding(),
        "max_new_tokens": settings.max_new_tokens,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "repetition_penalty": settings.repetition_penalty,
        "no_repeat_ngram_size": settings.no_repeat_ngram_size,
        "seed": settings.seed,
        "batch_size": settings.batch_size,
        "answered_by": list(answers),
    }
    for key, model_answers in answers.items():
        generation[key] = {
            "tokens": sum(a.tokens for a in model_answers),
            "seconds": timer.seconds[PHASES[key]],
        }
    return samples, generation


def score_samples(
    samples: list[EvalSample],
    embedding_dir: Path | None,
    device: torch.device,
    keys: tuple[str, ...] = ("base", "tuned"),
) -> dict[str, dict[str, float | None]]:
    """Per-sample scores against the forum's answer (stored in each sample) and their means per model."""
    references = [s.reference for s in samples]
    embedder = SentenceEmbedder(embedding_dir, device) if embedding_dir and samples else None
    means: dict[str, dict[str, float | None]] = {}
    for key in keys:
        answers = [s.answers[key] for s in samples]
        texts = [answer.text for answer in answers]
        similarity = (
            embedding_similarities(embedder, texts, references) if embedder else [None] * len(samples)
        )
        for answer, reference, cosine in zip(answers, references, similarity):
            answer.scores = ModelScores(
                token_f1=token_f1(answer.text, reference),
                rouge_l=rouge_l(answer.text, reference),
                embedding_similarity=cosine,
            )
        means[key] = {
            score.name: _mean([getattr(answer.scores, score.name) for answer in answers])
            for score in fields(ModelScores)
        }
    return means


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def write_outputs(
    config: Config, paths: RunLayout, results: dict[str, Any], samples: list[EvalSample]
) -> None:
    paths.eval_dir.mkdir(exist_ok=True)
    paths.eval_metrics.write_text(json.dumps(results, indent=2))
    write_eval_samples(paths.eval_samples, samples)
    curves = RunCurves(config.name, paths.metrics_csv, results["checkpoints"], results["base_eval_loss"])
    loss_png = plot_loss_curves([curves], paths.loss_png, title=f"{config.name}: loss")
    write_run_report(config, paths, results, samples, loss_png, note=base_model_note(config.model.base))
