"""The eval stage on the tiny demo model: the report's numbers against an independent computation."""

import base64
import html
import json

import pytest
import torch
from bitsandbytes.nn import Linear4bit
from peft import PeftModel
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from forumtune.base_model import load_tokenizer, resolve_base_model
from forumtune.records import read_eval_samples
from tests.eval.conftest import HELD_OUT, MAX_NEW_TOKENS, loss_by_hand


def load_like_the_demo(adapter_dir):
    """The demo's model settings written out directly: 4-bit NF4, double quant, fp32 compute, on the CPU."""
    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32,
    )
    base = AutoModelForCausalLM.from_pretrained(
        resolve_base_model("builtin:tiny-llama"),
        dtype=torch.float32,
        quantization_config=quantization,
        device_map={"": "cpu"},
    )
    for module in base.modules():
        if isinstance(
            module, Linear4bit
        ):  # the layout training used, whatever this CPU would pick for inference
            module.support_avx512bf16_for_cpu = False
    return PeftModel.from_pretrained(base, str(adapter_dir))


def report_cells(run_dir, selector):
    return HTMLParser((run_dir / "report.html").read_text()).css(selector)


def reported_value(run_dir, selector) -> float:
    cell = report_cells(run_dir, selector)[0]
    value = float(cell.attributes["data-value"])
    assert cell.text().strip() == f"{value:.4f}"
    return value


def test_report_eval_losses_match_an_independent_computation(evaluated_run):
    run_dir, records = evaluated_run.run_dir, evaluated_run.records
    tuned_model = load_like_the_demo(run_dir / "adapter")
    with tuned_model.disable_adapter():
        base_expected = loss_by_hand(tuned_model, records)
    tuned_expected = loss_by_hand(tuned_model, records)
    tuned_model.load_adapter(str(run_dir / "checkpoints" / "step-000002" / "adapter"), adapter_name="step2")
    tuned_model.set_adapter("step2")
    checkpoint_expected = loss_by_hand(tuned_model, records)

    base = reported_value(run_dir, 'table#metrics tr[data-model="base"] td')
    tuned = reported_value(run_dir, 'table#metrics tr[data-model="tuned"] td')
    checkpoint = reported_value(run_dir, "table#checkpoints td.num")
    assert base == pytest.approx(base_expected, abs=2e-4)
    assert tuned == pytest.approx(tuned_expected, abs=2e-4)
    assert checkpoint == pytest.approx(checkpoint_expected, abs=2e-4)
    assert abs(tuned - base) > 0.01 and abs(checkpoint - tuned) > 0.01  # three different models were measured
    perplexity = float(
        report_cells(run_dir, 'table#metrics tr[data-model="tuned"] td')[1].attributes["data-value"]
    )
    assert perplexity == pytest.approx(
        torch.exp(torch.tensor(tuned_expected, dtype=torch.float64)).item(), rel=1e-3
    )
    scored = sum(label != -100 for r in records for label in r["labels"][1:])
    assert json.loads((run_dir / "eval" / "metrics.json").read_text())["eval_trained_tokens"] == scored


def test_report_shows_every_answer_side_by_side_with_its_checks(evaluated_run):
    run_dir = evaluated_run.run_dir
    samples = read_eval_samples(run_dir / "eval" / "samples.jsonl")
    assert [s.question for s in samples] == [q for q, _ in HELD_OUT]
    page = (run_dir / "report.html").read_text()
    for sample in samples:
        for text in (
            sample.question,
            sample.reference,
            sample.answers["base"].text,
            sample.answers["tuned"].text,
        ):
            assert html.escape(text) in page
        assert sample.answers["tuned"].tokens <= MAX_NEW_TOKENS
    assert "<b>a lot</b>" not in page  # forum text is escaped, never markup
    rows = {
        row.css_first("td").text(): [td.text() for td in row.css("td")[1:]]
        for row in report_cells(run_dir, "table#artifacts tr")[1:]
    }
    planted_edit_notices = sum("This post was edited on" in answer for _, answer in HELD_OUT)
    assert rows["forum boilerplate (edit notices, quote headers, BBCode)"][0].startswith(
        f"{planted_edit_notices}/{len(HELD_OUT)} "
    )
    tuned = [s.answers["tuned"] for s in samples]
    cut_off = sum(not a.ended_with_eos and a.tokens == MAX_NEW_TOKENS for a in tuned)
    assert rows["hit the token limit instead of ending"][2].startswith(f"{cut_off}/{len(HELD_OUT)} ")


def greedy_by_hand(model, tokenizer, prompt_ids, max_new_tokens, penalty):
    """Argmax decoding one token at a time; each token already in the answer has its logit divided by
    `penalty` (multiplied when negative), the prompt's tokens are left alone."""
    ids, answer = prompt_ids, []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(ids).logits[0, -1].clone()
            for token in set(answer):
                logits[token] = logits[token] / penalty if logits[token] > 0 else logits[token] * penalty
            token = int(logits.argmax())
            if token == tokenizer.eos_token_id:
                break
            answer.append(token)
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return tokenizer.decode(answer, skip_special_tokens=True).strip()


def test_plain_greedy_answers_are_kept_beside_the_penalised_ones(evaluated_run):
    """eval's default decoding penalises repeats of the answer's own tokens; the plain greedy answers and
    their loop and token-limit counts are in the report too."""
    run_dir, records = evaluated_run.run_dir, evaluated_run.records
    samples = read_eval_samples(run_dir / "eval" / "samples.jsonl")
    model = load_like_the_demo(run_dir / "adapter")
    tokenizer = load_tokenizer("builtin:tiny-llama")
    prompt = tokenizer.apply_chat_template(
        records[0]["messages"][:-1], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    assert samples[0].answers["tuned_greedy"].text == greedy_by_hand(
        model, tokenizer, ids, MAX_NEW_TOKENS, 1.0
    )
    assert samples[0].answers["tuned"].text == greedy_by_hand(model, tokenizer, ids, MAX_NEW_TOKENS, 1.2)
    penalised = "greedy decoding, repetition penalty 1.2 on the answer's tokens"
    header = [th.text() for th in report_cells(run_dir, "table#decoding th")]
    assert header == [
        "check",
        "base model, plain greedy",
        f"base model, {penalised}",
        "fine-tuned, plain greedy",
        f"fine-tuned, {penalised}",
    ]
    rows = {
        row.css_first("td").text(): [td.text() for td in row.css("td")[1:]]
        for row in report_cells(run_dir, "table#decoding tr")[1:]
    }
    loops = [
        sum("repeated_ngram" in s.answers[key].flags for s in samples)
        for key in ("base_greedy", "base", "tuned_greedy", "tuned")
    ]
    assert [cell.split("/")[0] for cell in rows["repetition loops (a 4-word phrase 3+ times)"]] == [
        str(count) for count in loops
    ]
    assert len(report_cells(run_dir, "details.greedy")) == len(samples)


def test_loss_curves_are_saved_alone_and_embedded(evaluated_run):
    run_dir = evaluated_run.run_dir
    png = (run_dir / "loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (
        f'src="data:image/png;base64,{base64.b64encode(png).decode()}"'
        in (run_dir / "report.html").read_text()
    )


def test_report_states_settings_timings_and_data(evaluated_run):
    page = (evaluated_run.run_dir / "report.html").read_text()
    assert (
        f"greedy decoding, repetition penalty 1.2 on the answer's tokens, at most {MAX_NEW_TOKENS} new tokens, "
        "seed 42"
    ) in HTMLParser(page).body.text()
    timings = {
        row.css_first("th").text(): row.css_first("td").text()
        for row in report_cells(evaluated_run.run_dir, "table#timings tr")
    }
    assert timings["train: wall time"] == "12.5 s for 4 steps"
    assert timings["train: median throughput"] == "250 tokens/s"
    # on the CPU, memory is the process's resident set, and it is never called GPU memory
    assert timings["eval: peak process memory (resident, on the CPU)"].endswith("MiB")
    assert "train: peak process memory (resident, on the CPU)" in timings
    assert not [label for label in timings if "GPU" in label]
    assert "eval: generate, fine-tuned" in timings
    assert "embedding similarity" in page and "only smoke-tests the pipeline" in page
    linked = [
        node.attributes.get("src") or node.attributes.get("href")
        for node in HTMLParser(page).css("[src], link[href], script[src]")
    ]
    assert linked and all(link.startswith("data:") for link in linked)  # opens offline: nothing to fetch


def test_samples_file_reads_back_into_the_records_the_stage_wrote(evaluated_run):
    path = evaluated_run.run_dir / "eval" / "samples.jsonl"
    samples = read_eval_samples(path)
    assert [json.dumps(s.to_json(), ensure_ascii=False) for s in samples] == path.read_text().splitlines()
    for sample in samples:
        assert set(sample.answers) == {"base", "tuned", "base_greedy", "tuned_greedy"}
        assert sample.answers["tuned"].scores is not None  # scored against the forum's answer
        assert sample.answers["tuned_greedy"].scores is None  # kept to show the decoding, not scored
