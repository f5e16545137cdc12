import torch
from transformers import AutoModelForCausalLM

from forumtune.base_model import resolve_base_model
from forumtune.data.encode import IGNORE_INDEX, encode_conversation
from forumtune.eval.plots import plot_loss_curves
from forumtune.eval.report import render_report
from forumtune.train.batches import mean_token_loss
from forumtune.train.metrics_log import MetricsLog

QUESTIONS = [("Best wax for spring slush?", "A warm-temp wax with some fluoro-free structure."),
             ("How do I stop sitting back?", "Shins on the tongues, hands forward."),
             ("DIN for 80 kg?", "Look it up on the chart and have a shop check it.")]


def records(tokenizer):
    out = []
    for question, answer in QUESTIONS:
        example = encode_conversation(tokenizer, [{"role": "user", "content": question},
                                                  {"role": "assistant", "content": answer}])
        out.append({"input_ids": example.input_ids, "labels": example.labels})
    return out


def independent_loss(model, records) -> float:
    """Per-token cross entropy written out by hand, one example at a time, no padding."""
    total, count = 0.0, 0
    for record in records:
        ids = torch.tensor([record["input_ids"]])
        with torch.no_grad():
            log_probs = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
        for position in range(1, len(record["labels"])):
            target = record["labels"][position]
            if target != IGNORE_INDEX:
                total -= float(log_probs[position - 1, target])
                count += 1
    return total / count


def test_eval_loss_matches_an_independent_computation_whatever_the_batch(tiny_tokenizer):
    model = AutoModelForCausalLM.from_pretrained(resolve_base_model("builtin:tiny-llama"))
    data = records(tiny_tokenizer)
    expected = independent_loss(model, data)
    for batch_size in (1, 2, 3):
        measured = mean_token_loss(model, data, batch_size, tiny_tokenizer.pad_token_id, torch.device("cpu"))
        assert abs(measured - expected) < 1e-4


def test_loss_curve_png_and_report_html(tmp_path):
    log = MetricsLog(tmp_path / "metrics.csv")
    for step in range(1, 11):
        log.write(step=step, split="train", loss=5.0 / step)
    log.write(step=10, split="eval", loss=1.5)
    png = plot_loss_curves(tmp_path / "metrics.csv", tmp_path / "loss.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    html = render_report(tmp_path / "report.html", name="t", base_model="m", note="", loss_png="AAAA",
                         metrics=[{"model": "base", "loss": 2.0, "perplexity": 7.39}], data_stats={"threads": 3},
                         samples=[{"question": "<script>alert(1)</script>", "reference": "r", "base": "b",
                                   "tuned": "t"}], generation_settings="greedy", training={}, config_yaml="")
    text = html.read_text()
    assert "<script>alert" not in text and "&lt;script&gt;" in text
    assert 'src="data:image/png;base64,AAAA"' in text
