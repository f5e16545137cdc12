"""The chat stage loading real run artifacts of the built-in tiny Llama: adapter, merged model, GGUF file."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch
from peft import LoraConfig, get_peft_model
from tests.conftest import write_config
from transformers import AutoModelForCausalLM

from forumtune.base_model import resolve_base_model
from forumtune.chat.errors import ChatError
from forumtune.chat.stage import load_chat_models
from forumtune.chat.transformers_engine import TransformersEngine
from forumtune.config import Config, load_config
from forumtune.export.gguf_export import export_gguf
from forumtune.export.merge import merge_adapter
from forumtune.layout import RunLayout
from forumtune.models import load_base_model

QUESTION = [{"role": "user", "content": "which skis for deep powder?"}]


def greedy_text(engine, max_new_tokens: int = 12) -> str:
    return engine.complete(QUESTION, max_new_tokens=max_new_tokens, temperature=0)[0]


def run_config(tmp_path: Path, **chat: object) -> Config:
    return load_config(
        write_config(tmp_path, model={"load_in_4bit": False, "compute_dtype": "float32"}, chat=chat)
    )


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run dir holding what train, merge and export leave: adapter/, merged/, export/demo-f32.gguf."""
    root = tmp_path_factory.mktemp("chat-run")
    config = run_config(root)
    run_dir = config.run_dir
    base_path = resolve_base_model(config.model.base)
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    torch.manual_seed(3)
    # Random (not zero) LoRA weights, so the fine-tune answers differently from its base.
    lora = LoraConfig(r=8, lora_alpha=64, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(run_dir / "adapter")
    merge_adapter(base_path, run_dir / "adapter", run_dir / "merged", dtype="float32")
    export_gguf(run_dir / "merged", run_dir / "export" / "demo-f32.gguf", out_type="f32")
    return root


def test_adapter_on_a_4bit_base_answers_and_its_base_answers_differently(trained_run):
    config = load_config(trained_run / "config.yaml", ["model.load_in_4bit=true"])
    models = load_chat_models(config, config.run_dir)

    assert models.tuned.model.base_model.model.is_loaded_in_4bit
    tuned, base = greedy_text(models.tuned), greedy_text(models.base)
    assert tuned and base and tuned != base
    # The base answers through the same weights with the adapter switched off: exactly the 4-bit base.
    plain_base = TransformersEngine(
        load_base_model(config.model, torch.device("cpu")), models.tuned.tokenizer
    )
    assert base == greedy_text(plain_base)
    assert greedy_text(models.tuned) == tuned  # switching the adapter off for the base left it on after


def test_merged_model_answers_like_the_adapter(trained_run):
    adapter = load_chat_models(load_config(trained_run / "config.yaml"), trained_run / "runs" / "demo")
    config = load_config(trained_run / "config.yaml", ["chat.source=merged"])
    merged = load_chat_models(config, config.run_dir)

    assert merged.base is None  # a second model costs memory with merged/: only on request
    assert greedy_text(merged.tuned, 20) == greedy_text(adapter.tuned, 20)


def test_merged_with_base_loads_the_base_beside_it(trained_run):
    config = load_config(trained_run / "config.yaml", ["chat.source=merged", "chat.with_base=true"])
    models = load_chat_models(config, config.run_dir)
    assert models.base is not None and greedy_text(models.base) != greedy_text(models.tuned)


def test_gguf_file_answers_like_the_merged_model(trained_run):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is optional: pip install llama-cpp-python")
    overrides = ["chat.source=gguf", "export.gguf_type=f32", "chat.context_tokens=256"]
    config = load_config(trained_run / "config.yaml", overrides)
    assert RunLayout.of(config).gguf.is_file()
    gguf = load_chat_models(config, config.run_dir).tuned
    merged_config = load_config(trained_run / "config.yaml", ["chat.source=merged"])
    merged = load_chat_models(merged_config, merged_config.run_dir).tuned

    text, finish_reason, prompt_tokens, completion_tokens = gguf.complete(
        QUESTION, max_new_tokens=16, temperature=0
    )
    assert gguf.max_context_tokens == 256
    assert (finish_reason, completion_tokens) == ("length", 16)
    assert prompt_tokens == merged.count_tokens(QUESTION)
    assert text == greedy_text(merged, 16)


def test_gguf_without_llama_cpp_says_how_to_get_it(trained_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if llama-cpp-python were not installed
    config = load_config(trained_run / "config.yaml", ["chat.source=gguf", "export.gguf_type=f32"])
    with pytest.raises(ChatError, match="pip install llama-cpp-python"):
        load_chat_models(config, config.run_dir)


@pytest.mark.parametrize(
    ("source", "advice"),
    [("adapter", "forumtune train"), ("merged", "forumtune merge"), ("gguf", "forumtune export")],
)
def test_a_missing_artifact_names_the_stage_to_run(tmp_path, source, advice, monkeypatch):
    monkeypatch.setitem(
        sys.modules, "llama_cpp", None
    )  # the missing file is said before llama.cpp is asked for
    config = run_config(tmp_path, source=source)
    with pytest.raises(ChatError, match=advice):
        load_chat_models(config, config.run_dir)


def test_gguf_context_defaults_to_the_trained_one_when_shorter(trained_run):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is optional: pip install llama-cpp-python")
    config = load_config(trained_run / "config.yaml", ["chat.source=gguf", "export.gguf_type=f32"])
    assert load_chat_models(config, config.run_dir).tuned.max_context_tokens == 1024  # the tiny Llama's


@pytest.fixture(scope="module")
def gguf_engine(trained_run):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is optional: pip install llama-cpp-python")
    config = load_config(trained_run / "config.yaml", ["chat.source=gguf", "export.gguf_type=f32"])
    return load_chat_models(config, config.run_dir).tuned


def test_gguf_sampling_follows_the_seed(gguf_engine):
    def sampled(seed):
        return gguf_engine.complete(QUESTION, max_new_tokens=20, temperature=1.0, seed=seed)[0]

    assert sampled(5) == sampled(5)
    assert len({sampled(None) for _ in range(3)}) > 1  # no seed: a fresh one each time, not the last one


def test_gguf_stop_strings_and_cancellation(gguf_engine, wait_until_idle):
    full_text = greedy_text(gguf_engine, 40)
    stop = full_text[12:15]
    text, finish_reason, _, _ = gguf_engine.complete(QUESTION, max_new_tokens=40, temperature=0, stop=[stop])
    assert (text, finish_reason) == (full_text[: full_text.index(stop)], "stop")

    cancel = threading.Event()
    generation = gguf_engine.generate(QUESTION, max_new_tokens=500, temperature=0, cancel=cancel)
    for _ in generation:
        cancel.set()
    assert generation.finish_reason == "cancelled" and generation.completion_tokens < 10
    assert wait_until_idle(gguf_engine, 1.0)


def forumtune(*args: str, stdin: str | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "forumtune.cli", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_chat_command_refuses_a_reply_length_the_context_cannot_hold(trained_run):
    chat = forumtune("chat", str(trained_run / "config.yaml"), "--source", "merged")
    output, errors = chat.communicate("/set max_new_tokens 2000\n/settings\n/quit\n", timeout=300)
    assert chat.returncode == 0, errors
    output = " ".join(output.split())  # rich wraps lines at 80 columns when not on a terminal
    assert (
        "Cannot set max_new_tokens to 2000: a reply that long does not fit the model's 1024-token context"
        in output
    )
    assert "max_new_tokens=256" in output  # chat.max_new_tokens, unchanged


def test_serve_command_listens_on_the_port_and_host_flags(trained_run):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = forumtune(
        "serve",
        str(trained_run / "config.yaml"),
        "--source",
        "merged",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and server.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
                break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            pytest.fail(
                f"the server did not answer on port {port}: {server.stderr.read() if server.poll() else ''}"
            )
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=60)
    assert health["models"] == ["demo"]
    assert f"serving demo at http://127.0.0.1:{port}/v1" in output
