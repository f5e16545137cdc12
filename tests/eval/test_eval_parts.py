"""Eval parts on the tiny model: the loss whatever the batch, batched generation, the curves."""

import torch
from transformers import AutoModelForCausalLM

from forumtune.base_model import resolve_base_model
from forumtune.batching import mean_token_loss
from forumtune.eval.generate import GenerationSettings, generate_answers, prompt_messages
from forumtune.eval.plots import RunCurves, loss_points, plot_loss_curves
from forumtune.metrics_log import MetricsLog
from tests.eval.conftest import held_out_records, loss_by_hand


def test_eval_loss_matches_an_independent_computation_whatever_the_batch(tiny_tokenizer):
    model = AutoModelForCausalLM.from_pretrained(resolve_base_model("builtin:tiny-llama"))
    data = held_out_records(tiny_tokenizer)
    expected = loss_by_hand(model, data)
    for batch_size in (1, 2, 3):
        measured = mean_token_loss(model, data, batch_size, tiny_tokenizer.pad_token_id, torch.device("cpu"))
        assert abs(measured - expected) < 1e-4


def test_batched_generation_gives_each_prompt_the_answer_it_gets_alone(tiny_tokenizer):
    model = AutoModelForCausalLM.from_pretrained(resolve_base_model("builtin:tiny-llama"))
    prompts = [prompt_messages(r) for r in held_out_records(tiny_tokenizer)[:3]]
    greedy = GenerationSettings(max_new_tokens=5, temperature=0.0, top_p=1.0, seed=1, batch_size=3)
    batched = generate_answers(model, tiny_tokenizer, prompts, greedy)
    alone = [generate_answers(model, tiny_tokenizer, [p], greedy)[0] for p in prompts]
    assert [a.raw for a in batched] == [a.raw for a in alone]  # left padding changes nothing
    assert all(a.tokens <= 5 and a.ended_with_eos == (a.tokens < 5) for a in batched)
    sampled = GenerationSettings(max_new_tokens=5, temperature=1.0, top_p=0.9, seed=3, batch_size=3)
    first, again = (generate_answers(model, tiny_tokenizer, prompts, sampled) for _ in range(2))
    assert first == again  # the seed fixes the samples
    assert tiny_tokenizer.padding_side == "right"  # restored for training-style batches


def test_loss_curves_of_one_run_and_of_two_runs(tmp_path):
    for name, offset in (("a", 0.0), ("b", 0.5)):
        log = MetricsLog(tmp_path / f"{name}.csv")
        for step in range(1, 11):
            log.write(step=step, split="train", loss=5.0 / step + offset)
        log.write(step=10, split="eval", loss=1.5 + offset)
    one = plot_loss_curves(
        [RunCurves("a", tmp_path / "a.csv", [{"step": 5, "eval_loss": 1.7}], 6.0)], tmp_path / "one.png"
    )
    two = plot_loss_curves(
        [RunCurves("a", tmp_path / "a.csv"), RunCurves("b", tmp_path / "b.csv")], tmp_path / "two.png"
    )
    assert loss_points(tmp_path / "b.csv", "eval") == [(10, 2.0)]
    for png in (one, two):
        assert png.read_bytes()[:4] == b"\x89PNG"
