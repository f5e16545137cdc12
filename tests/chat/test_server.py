"""The OpenAI-compatible server, live on a loopback port, driven by the official openai client and by httpx."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest
from openai import OpenAI
from tests.chat.conftest import live_server

from forumtune.chat.engine import SamplingSettings
from forumtune.chat.errors import ChatError
from forumtune.chat.listen import is_loopback_host
from forumtune.chat.server import create_app, serve

QUESTION = [{"role": "user", "content": "my bike runs hot after a long ride"}]


@pytest.fixture
def client(server_url, api_key) -> OpenAI:
    return OpenAI(base_url=f"{server_url}/v1", api_key=api_key, max_retries=0, timeout=30)


@pytest.fixture
def http(server_url, api_key) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
    ) as http:
        yield http


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    return error


def test_non_streamed_completion_matches_the_engine(client, engine, model_name):
    response = client.chat.completions.create(
        model=model_name, messages=QUESTION, max_tokens=12, temperature=0
    )

    expected_text, _, prompt_tokens, _ = engine.complete(QUESTION, max_new_tokens=12, temperature=0)
    choice = response.choices[0]
    assert response.object == "chat.completion" and response.model == model_name
    assert choice.message.role == "assistant" and choice.message.content == expected_text
    assert choice.finish_reason == "length"
    assert response.usage.prompt_tokens == prompt_tokens
    assert response.usage.completion_tokens == 12
    assert response.usage.total_tokens == prompt_tokens + 12


def test_streamed_completion_arrives_in_chunks_with_usage(client, engine, model_name):
    stream = client.chat.completions.create(
        model=model_name,
        messages=QUESTION,
        max_completion_tokens=30,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    content = [
        chunk.choices[0].delta.content for chunk in chunks if chunk.choices and chunk.choices[0].delta.content
    ]
    assert len(content) > 1
    assert "".join(content) == engine.complete(QUESTION, max_new_tokens=30, temperature=0)[0]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 30


def test_stream_ends_with_done_marker(http, model_name):
    body = {"model": model_name, "messages": QUESTION, "max_tokens": 5, "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    assert all(json.loads(event.removeprefix("data: "))["id"] for event in events[:-1])


def test_stop_string_is_honoured(client, engine, model_name):
    full_text = engine.complete(QUESTION, max_new_tokens=40, temperature=0)[0]
    stop = full_text[12:15]

    response = client.chat.completions.create(
        model=model_name, messages=QUESTION, max_tokens=40, temperature=0, stop=stop
    )

    assert response.choices[0].message.content == full_text[: full_text.index(stop)]
    assert response.choices[0].finish_reason == "stop"


def test_models_are_listed(client, model_name):
    assert [model.id for model in client.models.list()] == [model_name]
    assert client.models.retrieve(model_name).id == model_name


def test_health_needs_no_key(server_url, model_name):
    response = httpx.get(f"{server_url}/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok" and response.json()["models"] == [model_name]


def test_bad_json_is_a_400(http):
    response = http.post(
        "/v1/chat/completions",
        content=b'{"model": "x", "messages": [',
        headers={"Content-Type": "application/json"},
    )
    assert_openai_error(response, 400, "invalid_json")


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"messages": None}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"temperature": 5}, "temperature"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"max_tokens": 0}, "max_tokens"),
    ],
)
def test_bad_fields_are_400s_naming_the_field(http, model_name, change, param):
    body = {"model": model_name, "messages": QUESTION, **change}
    body = {key: value for key, value in body.items() if value is not None}
    error = assert_openai_error(http.post("/v1/chat/completions", json=body), 400)
    assert error["param"] == param and error["type"] == "invalid_request_error"


def test_max_tokens_over_the_server_limit_is_a_400(http, model_name, server_max_tokens):
    body = {"model": model_name, "messages": QUESTION, "max_tokens": server_max_tokens + 1}
    error = assert_openai_error(http.post("/v1/chat/completions", json=body), 400)
    assert error["param"] == "max_tokens" and str(server_max_tokens) in error["message"]


def test_prompt_too_long_for_the_context_is_a_400(http, model_name):
    messages = [{"role": "user", "content": "the old engine runs hot " * 500}]
    response = http.post("/v1/chat/completions", json={"model": model_name, "messages": messages})
    assert_openai_error(response, 400, "context_length_exceeded")


def test_unknown_model_is_a_404(client, http):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=QUESTION)
    response = http.post("/v1/chat/completions", json={"model": "no-such-model", "messages": QUESTION})
    assert assert_openai_error(response, 404, "model_not_found")["param"] == "model"


def test_unknown_route_is_an_openai_shaped_404(http):
    assert_openai_error(http.get("/v1/nothing-here"), 404)


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "Basic abc"}]
)
def test_api_key_is_required(server_url, model_name, headers):
    body = {"model": model_name, "messages": QUESTION, "max_tokens": 2}
    assert_openai_error(httpx.post(f"{server_url}/v1/chat/completions", json=body, headers=headers), 401)
    assert_openai_error(httpx.get(f"{server_url}/v1/models", headers=headers), 401)


def test_openai_client_with_a_wrong_key_is_refused(server_url, model_name):
    client = OpenAI(base_url=f"{server_url}/v1", api_key="wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model=model_name, messages=QUESTION, max_tokens=2)


def start_long_stream(http: httpx.Client, model_name: str) -> tuple[httpx.Response, Iterator[str]]:
    """A streamed 3000-token reply, read up to its first text; keep the line iterator alive to keep it open."""
    body = {"model": model_name, "messages": QUESTION, "max_tokens": 3000, "temperature": 0, "stream": True}
    response = http.send(http.build_request("POST", "/v1/chat/completions", json=body), stream=True)
    assert response.status_code == 200
    lines = response.iter_lines()
    first_text_chunk = next(
        line for line in lines if line.startswith("data: ") and '"content": ""' not in line
    )
    assert '"content"' in first_text_chunk
    return response, lines


def test_client_disconnect_stops_generation(
    single_slot_server_url, long_context_engine, model_name, wait_until_idle
):
    with httpx.Client(base_url=single_slot_server_url, timeout=30) as http:
        response, _ = start_long_stream(http, model_name)
        assert long_context_engine.is_busy()
        response.close()

    # The 3000-token reply would keep the model busy for many seconds; cancelled, it stops at once.
    assert wait_until_idle(long_context_engine, timeout=3.0)
    body = {"model": model_name, "messages": QUESTION, "max_tokens": 8, "temperature": 0}
    answer = httpx.post(f"{single_slot_server_url}/v1/chat/completions", json=body, timeout=30)
    assert answer.status_code == 200
    expected = long_context_engine.complete(QUESTION, max_new_tokens=8, temperature=0)[0]
    assert answer.json()["choices"][0]["message"]["content"] == expected


def test_full_queue_answers_503(single_slot_server_url, long_context_engine, model_name, wait_until_idle):
    body = {"model": model_name, "messages": QUESTION, "max_tokens": 4}
    with httpx.Client(base_url=single_slot_server_url, timeout=30) as http:
        holding, _ = start_long_stream(http, model_name)
        refused = httpx.post(f"{single_slot_server_url}/v1/chat/completions", json=body, timeout=30)
        holding.close()
    assert assert_openai_error(refused, 503, "server_overloaded")["type"] == "server_error"
    assert refused.headers["retry-after"] == "1"

    assert wait_until_idle(long_context_engine, timeout=3.0)
    answer = httpx.post(f"{single_slot_server_url}/v1/chat/completions", json=body, timeout=30)
    assert answer.status_code == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "example.com", "::"])
def test_serve_refuses_a_public_host_without_a_key(engine, host):
    with pytest.raises(ChatError, match="api_key"):
        serve({"m": engine}, host=host, port=0)


def test_loopback_hosts_are_recognised():
    assert all(is_loopback_host(host) for host in ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.5"])
    assert not any(is_loopback_host(host) for host in ["0.0.0.0", "10.0.0.1", "myhost"])


def test_text_completion_continues_the_prompt(client, engine, model_name):
    prompt = "the old engine runs hot"
    response = client.completions.create(model=model_name, prompt=prompt, max_tokens=10, temperature=0)

    expected = "".join(engine.generate_from_text(prompt, max_new_tokens=10, temperature=0))
    assert response.object == "text_completion" and response.model == model_name
    assert response.choices[0].text == expected and response.choices[0].finish_reason == "length"
    assert response.usage.prompt_tokens == len(engine.text_ids(prompt))
    assert response.usage.completion_tokens == 10


def test_streamed_text_completion_matches_the_whole_one(client, model_name):
    options = {"model": model_name, "prompt": "my bike makes a weird noise", "temperature": 0}
    whole = client.completions.create(**options).choices[0].text
    chunks = list(client.completions.create(**options, stream=True))

    assert len(chunks) > 2 and all(chunk.object == "text_completion" for chunk in chunks)
    assert "".join(chunk.choices[0].text for chunk in chunks) == whole
    assert chunks[-1].choices[0].finish_reason == "length"  # OpenAI's default of 16 tokens


def test_text_completion_stop_string_and_bad_prompt(client, http, engine, model_name):
    prompt = "the carburetor keeps failing"
    full_text = "".join(engine.generate_from_text(prompt, max_new_tokens=30, temperature=0))
    stop = full_text[10:13]
    response = client.completions.create(
        model=model_name, prompt=prompt, max_tokens=30, temperature=0, stop=[stop]
    )
    assert response.choices[0].text == full_text[: full_text.index(stop)]
    assert response.choices[0].finish_reason == "stop"

    error = assert_openai_error(http.post("/v1/completions", json={"model": model_name, "prompt": 3}), 400)
    assert error["param"] == "prompt"
    too_long = {"model": model_name, "prompt": "word " * 1000, "max_tokens": 1024}
    assert_openai_error(http.post("/v1/completions", json=too_long), 400, "context_length_exceeded")


def test_too_many_tokens_through_the_openai_client_is_a_bad_request(client, model_name, server_max_tokens):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model_name, messages=QUESTION, max_tokens=server_max_tokens + 1)
    assert caught.value.status_code == 400 and caught.value.body["param"] == "max_tokens"


def test_openai_client_leaving_mid_stream_does_not_hurt_the_next_request(
    single_slot_server_url, long_context_engine, model_name, wait_until_idle
):
    client = OpenAI(base_url=f"{single_slot_server_url}/v1", api_key="unused", max_retries=0, timeout=30)
    stream = client.chat.completions.create(
        model=model_name, messages=QUESTION, max_tokens=3000, temperature=0, stream=True
    )
    received = [chunk for chunk, _ in zip(stream, range(5))]
    stream.close()  # drops the connection with 2995 tokens to go
    assert len(received) == 5

    assert wait_until_idle(long_context_engine, timeout=3.0)
    # The server admits one request at a time, so this succeeds only if the abandoned one was let go.
    answer = client.chat.completions.create(model=model_name, messages=QUESTION, max_tokens=8, temperature=0)
    expected = long_context_engine.complete(QUESTION, max_new_tokens=8, temperature=0)[0]
    assert answer.choices[0].message.content == expected


def test_requests_without_max_tokens_get_the_configured_reply_length(engine, model_name):
    app = create_app({model_name: engine}, sampling=SamplingSettings(max_new_tokens=7, temperature=0))
    with live_server(app) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=30)
        response = client.chat.completions.create(model=model_name, messages=QUESTION)
    assert response.usage.completion_tokens == 7 and response.choices[0].finish_reason == "length"
    assert (
        response.choices[0].message.content == engine.complete(QUESTION, max_new_tokens=7, temperature=0)[0]
    )


def test_the_configured_system_prompt_goes_before_requests_without_one(engine, model_name):
    system = {"role": "system", "content": "You answer motorbike questions."}
    own_system = {"role": "system", "content": "Be brief."}

    def expected(messages):
        return engine.complete(messages, max_new_tokens=10, temperature=0)[0], engine.count_tokens(messages)

    app = create_app({model_name: engine}, system_prompt=system["content"])
    with live_server(app) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=30)
        answers = [
            client.chat.completions.create(model=model_name, messages=messages, max_tokens=10, temperature=0)
            for messages in (QUESTION, [own_system, *QUESTION])
        ]

    got = [(answer.choices[0].message.content, answer.usage.prompt_tokens) for answer in answers]
    assert got == [expected([system, *QUESTION]), expected([own_system, *QUESTION])]


def test_chat_page_is_served_without_a_key(server_url):
    page = httpx.get(f"{server_url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/v1/chat/completions" in page.text and 'id="prompt"' in page.text
    assert httpx.get(f"{server_url}/health").json()["api_key_required"] is True
