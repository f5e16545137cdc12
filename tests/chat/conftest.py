"""Fixtures for the chat stage: a tiny real tokenizer and model, engines over them, a live server."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import uvicorn
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from forumtune.chat.server import create_app
from forumtune.chat.transformers_engine import TransformersEngine

API_KEY = "test-secret-key"
MODEL_NAME = "tiny-forum"
SERVER_MAX_TOKENS = 1024

MISTRAL_STYLE_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '[SYS] ' + message['content'] + ' [/SYS]' }}"
    "{% elif message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
    "{% endif %}"
    "{% endfor %}"
)

SUBJECTS = [
    "the carburetor",
    "my bike",
    "this forum",
    "the new firmware",
    "a cheap charger",
    "the old engine",
]
VERBS = [
    "keeps failing",
    "works fine",
    "needs a new seal",
    "makes a weird noise",
    "got an update",
    "runs hot",
]
ENDINGS = ["after a long ride.", "every morning.", "since last week.", "when it rains.", "on the highway."]


def forum_sentences(count: int = 300) -> list[str]:
    rng = random.Random(0)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(ENDINGS)}" for _ in range(count)]


def build_tokenizer() -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(forum_sentences(), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>")
    tokenizer.chat_template = MISTRAL_STYLE_TEMPLATE
    return tokenizer


def build_model(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        # A zero row gives a zero logit, which the best of ~200 random logits always beats: the random model
        # then never ends a reply early and writes only printable text (no stray bytes, no newlines).
        for token_id in range(len(tokenizer)):
            if not _is_plain_text(tokenizer.decode([token_id])):
                model.lm_head.weight[token_id].zero_()
    return model


def _is_plain_text(text: str) -> bool:
    return bool(text) and text.isprintable() and "\ufffd" not in text


@pytest.fixture(autouse=True)
def single_torch_thread() -> Iterator[None]:
    """The tiny model runs fastest on one thread, and much slower when a busy CPU makes two threads wait."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-model")
    tokenizer = build_tokenizer()
    build_model(tokenizer).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def loaded(model_dir: Path):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    return model, tokenizer


@pytest.fixture(scope="session")
def engine(loaded) -> TransformersEngine:
    model, tokenizer = loaded
    return TransformersEngine(model, tokenizer, max_context_tokens=2048)


@pytest.fixture(scope="session")
def long_context_engine(loaded) -> TransformersEngine:
    model, tokenizer = loaded
    return TransformersEngine(model, tokenizer, max_context_tokens=4096)


@pytest.fixture(scope="session")
def tuned_and_base(model_dir: Path) -> dict[str, TransformersEngine]:
    """A fine-tune (random, non-zero LoRA on the tiny model) and its base, answering through one model."""
    torch.manual_seed(1)
    lora = LoraConfig(r=8, lora_alpha=64, target_modules="all-linear", init_lora_weights=False)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), lora)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return {
        MODEL_NAME: TransformersEngine(model, tokenizer, max_context_tokens=2048),
        f"{MODEL_NAME}-base": TransformersEngine(
            model, tokenizer, max_context_tokens=2048, without_adapter=True
        ),
    }


@contextmanager
def live_server(app) -> Iterator[str]:
    """Serve the app with uvicorn on a free loopback port in a background thread; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="session")
def server_url(engine: TransformersEngine) -> Iterator[str]:
    app = create_app({MODEL_NAME: engine}, api_key=API_KEY, max_tokens_limit=SERVER_MAX_TOKENS)
    with live_server(app) as url:
        yield url


@pytest.fixture(scope="session")
def single_slot_server_url(long_context_engine: TransformersEngine) -> Iterator[str]:
    """A keyless server admitting one request at a time, allowing replies long enough to interrupt."""
    app = create_app({MODEL_NAME: long_context_engine}, max_tokens_limit=4000, max_queue=1)
    with live_server(app) as url:
        yield url


def _wait_until_idle(engine: TransformersEngine, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while engine.is_busy():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def wait_until_idle():
    """wait_until_idle(engine, timeout) -> bool: whether the engine's model was free again in time."""
    return _wait_until_idle


@pytest.fixture
def api_key() -> str:
    return API_KEY


@pytest.fixture
def model_name() -> str:
    return MODEL_NAME


@pytest.fixture
def server_max_tokens() -> int:
    return SERVER_MAX_TOKENS
