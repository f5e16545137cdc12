"""An OpenAI-compatible HTTP server over one or more chat engines."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import anyio
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field, ValidationError, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from forumtune.chat.engine import ChatEngine, FinishReason, Generation
from forumtune.chat.errors import ChatError, ContextTooLongError, GenerationError

MAX_STOP_STRINGS = 4
OWNER = "forumtune"
GENERATION_FAILED = "The model failed while generating the reply; the server log has the details."

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered as an OpenAI-shaped JSON body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessageIn(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def plain(self) -> dict[str, str]:
        role = "system" if self.role == "developer" else self.role
        content = (
            self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)
        )
        return {"role": role, "content": content}


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model: str
    messages: Annotated[list[ChatMessageIn], Field(min_length=1)]
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    stop: list[str] | None = None
    seed: int | None = None
    n: Annotated[int, Field(ge=1, le=1)] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def stop_as_list(cls, value: Any) -> Any:
        stops = [value] if isinstance(value, str) else value
        if isinstance(stops, list) and len(stops) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings are supported")
        return stops

    def requested_max_tokens(self) -> tuple[int | None, str]:
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens, "max_completion_tokens"
        return self.max_tokens, "max_tokens"

    def sampling(self) -> dict[str, Any]:
        chosen = {"temperature": self.temperature, "top_p": self.top_p, "seed": self.seed, "stop": self.stop}
        return {name: value for name, value in chosen.items() if value is not None}


class Admission:
    """Counts chat requests running or waiting, refusing more than max_queue at once."""

    def __init__(self, max_queue: int) -> None:
        self.max_queue = max_queue
        self.in_flight = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            if self.in_flight >= self.max_queue:
                raise ApiError(
                    503,
                    f"The server is busy ({self.in_flight} requests running or waiting); retry in a moment.",
                    type="server_error",
                    code="server_overloaded",
                    headers={"Retry-After": "1"},
                )
            self.in_flight += 1

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1


@dataclass(frozen=True)
class ReplyMeta:
    id: str
    created: int
    model: str


class StreamingResponseWithCleanup(StreamingResponse):
    """A streaming response that runs on_close however it ends, client disconnects included."""

    def __init__(self, content: AsyncIterator[str], on_close: Callable[[], None]) -> None:
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


def create_app(
    engines: dict[str, ChatEngine],
    *,
    api_key: str | None = None,
    max_tokens_limit: int = 1024,
    max_queue: int = 8,
) -> FastAPI:
    """The HTTP app; engines maps the model names clients send to the engines that answer them."""
    if not engines:
        raise ChatError("create_app needs at least one engine: pass {'model-name': ChatEngine(...)}.")
    if max_tokens_limit < 1 or max_queue < 1:
        raise ChatError(
            f"max_tokens_limit and max_queue must be at least 1, got {max_tokens_limit}, {max_queue}."
        )
    app = FastAPI(title="forumtune chat", docs_url=None, redoc_url=None)
    admission = Admission(max_queue)
    _add_error_handlers(app)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": sorted(engines), "requests_in_flight": admission.in_flight}

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        _check_api_key(request, api_key)
        return {"object": "list", "data": [_model_card(name) for name in engines]}

    @app.get("/v1/models/{name:path}")
    async def get_model(name: str, request: Request) -> dict[str, Any]:
        _check_api_key(request, api_key)
        _find_engine(engines, name)
        return _model_card(name)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        _check_api_key(request, api_key)
        chat = _parse_chat_request(await request.body())
        engine = _find_engine(engines, chat.model)
        requested, param = chat.requested_max_tokens()
        if requested is not None and requested > max_tokens_limit:
            raise ApiError(
                400, f"{param} is {requested}; this server allows at most {max_tokens_limit}.", param=param
            )
        admission.enter()
        handed_to_stream = False
        try:
            generation = await _start_generation(engine, chat, max_tokens_limit)
            meta = ReplyMeta(f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), chat.model)
            if chat.stream:
                handed_to_stream = True
                return _streaming_reply(generation, meta, chat, on_close=admission.leave)
            return JSONResponse(await _whole_reply(generation, meta))
        finally:
            if not handed_to_stream:
                admission.leave()

    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return error.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        endpoints = "GET /health, GET /v1/models and POST /v1/chat/completions"
        message = f"{error.detail} ({request.method} {request.url.path}); this server has {endpoints}."
        return ApiError(error.status_code, message, headers=error.headers).response()

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        message = f"Internal error ({type(error).__name__}); see the server log."
        return ApiError(500, message, type="server_error").response()


def _check_api_key(request: Request, api_key: str | None) -> None:
    if api_key is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), api_key.encode()):
        raise ApiError(
            401,
            "Missing or wrong API key; send the header 'Authorization: Bearer <key>'.",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )


def _parse_chat_request(body: bytes) -> ChatCompletionRequest:
    try:
        return ChatCompletionRequest.model_validate_json(body or b"")
    except ValidationError as error:
        first = error.errors()[0]
        if first["type"] == "json_invalid":
            raise ApiError(
                400,
                f"The request body is not valid JSON ({first['msg']}); "
                "send a JSON object with model and messages.",
                code="invalid_json",
            ) from error
        param = _param_path(first["loc"])
        where = f"{param}: " if param else ""
        raise ApiError(400, f"{where}{first['msg']}", param=param or None, code="invalid_value") from error


def _param_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _find_engine(engines: dict[str, ChatEngine], name: str) -> ChatEngine:
    if name not in engines:
        known = ", ".join(sorted(engines))
        raise ApiError(
            404,
            f"The model '{name}' does not exist here; use one of: {known}.",
            param="model",
            code="model_not_found",
        )
    return engines[name]


def _model_card(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": OWNER}


async def _start_generation(
    engine: ChatEngine, chat: ChatCompletionRequest, max_tokens_limit: int
) -> Generation:
    messages = [message.plain() for message in chat.messages]
    requested, param = chat.requested_max_tokens()
    try:
        prompt_tokens = await anyio.to_thread.run_sync(engine.count_tokens, messages)
        room = engine.max_context_tokens - prompt_tokens
        max_new_tokens = requested if requested is not None else min(max_tokens_limit, room)
        if max_new_tokens > room or room < 1:
            raise ContextTooLongError(
                f"The messages take {prompt_tokens} tokens and {param}={max_new_tokens} more do not fit the "
                f"{engine.max_context_tokens}-token context; drop old messages or ask for fewer tokens."
            )
        return await anyio.to_thread.run_sync(
            lambda: engine.generate(messages, max_new_tokens, cancel=threading.Event(), **chat.sampling())
        )
    except ContextTooLongError as error:
        raise ApiError(400, str(error), param="messages", code="context_length_exceeded") from error
    except ChatError as error:
        raise ApiError(400, str(error), param="messages", code="invalid_value") from error


async def _whole_reply(generation: Generation, meta: ReplyMeta) -> dict[str, Any]:
    try:
        text = await anyio.to_thread.run_sync(lambda: "".join(generation), abandon_on_cancel=True)
    except GenerationError as error:
        logger.error("%s", error, exc_info=error.__cause__)
        raise ApiError(500, GENERATION_FAILED, type="server_error") from error
    finally:
        generation.cancel.set()  # stops the model if this request was cancelled meanwhile
    return {
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": _openai_finish_reason(generation.finish_reason),
            }
        ],
        "usage": _usage(generation),
    }


def _streaming_reply(
    generation: Generation, meta: ReplyMeta, chat: ChatCompletionRequest, on_close: Callable[[], None]
) -> StreamingResponse:
    include_usage = chat.stream_options is not None and chat.stream_options.include_usage

    def close() -> None:
        generation.cancel.set()  # a client that went away stops the model at its next token
        on_close()

    return StreamingResponseWithCleanup(_sse_events(generation, meta, include_usage), on_close=close)


async def _sse_events(generation: Generation, meta: ReplyMeta, include_usage: bool) -> AsyncIterator[str]:
    pieces: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    threading.Thread(
        target=_pump, args=(iter(generation), loop, pieces), name="chat-stream", daemon=True
    ).start()
    yield _sse(_chunk(meta, {"role": "assistant", "content": ""}))
    while (item := await pieces.get()) is not None:
        if isinstance(item, BaseException):
            logger.error("%s", item, exc_info=item.__cause__ or item)
            yield _sse(_error_body(GENERATION_FAILED))
            yield "data: [DONE]\n\n"
            return
        yield _sse(_chunk(meta, {"content": item}))
    yield _sse(_chunk(meta, {}, _openai_finish_reason(generation.finish_reason)))
    if include_usage:
        yield _sse({**_chunk(meta, {}), "choices": [], "usage": _usage(generation)})
    yield "data: [DONE]\n\n"


def _pump(pieces: Iterator[str], loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
    """Moves generated text from this worker thread onto the event loop; None marks the end."""
    last: BaseException | None = None
    try:
        for piece in pieces:
            loop.call_soon_threadsafe(queue.put_nowait, piece)
    except Exception as error:  # noqa: BLE001 - sent to the client as an error event
        last = error
    with contextlib.suppress(RuntimeError):  # the event loop closed: the server shut down meanwhile
        loop.call_soon_threadsafe(queue.put_nowait, last)


def _error_body(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "server_error", "param": None, "code": None}}


def _chunk(meta: ReplyMeta, delta: dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": meta.id,
        "object": "chat.completion.chunk",
        "created": meta.created,
        "model": meta.model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _usage(generation: Generation) -> dict[str, int]:
    prompt, completion = generation.prompt_tokens, generation.completion_tokens
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _openai_finish_reason(reason: FinishReason | None) -> str:
    return "length" if reason == "length" else "stop"


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    engines: dict[str, ChatEngine],
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    *,
    max_tokens_limit: int = 1024,
    max_queue: int = 8,
    log_level: str = "info",
) -> None:
    """Serve the engines over HTTP until interrupted; a host beyond this machine needs an api_key."""
    if not is_loopback_host(host) and not api_key:
        raise ChatError(
            f"Refusing to listen on {host} without an API key: anyone who can reach it could use the model. "
            "Pass api_key=..., or bind to 127.0.0.1."
        )
    app = create_app(engines, api_key=api_key, max_tokens_limit=max_tokens_limit, max_queue=max_queue)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
