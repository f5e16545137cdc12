"""An OpenAI-compatible HTTP server over one or more chat engines, with a web chat page at /."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Literal

import anyio
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from forumtune.chat.engine import Engine, Generation, SamplingSettings
from forumtune.chat.errors import ChatError, ContextTooLongError, GenerationError
from forumtune.chat.grounding import Grounding
from forumtune.chat.listen import bind_socket, check_host
from forumtune.chat.openai_api import (
    ApiError,
    ChatCompletionRequest,
    CompletionRequest,
    ReplyMeta,
    SamplingRequest,
    closing_chunk,
    opening_chunk,
    parse_request,
    text_chunk,
    usage_chunk,
    whole_reply,
)
from forumtune.chat.web_page import CHAT_PAGE_HTML
from forumtune.retrieval.context import Source

OWNER = "forumtune"
GENERATION_FAILED = "The model failed while generating the reply; the server log has the details."
ENDPOINTS = (
    "GET / (chat page), GET /health, GET /v1/models, POST /v1/chat/completions and POST /v1/completions"
)

logger = logging.getLogger(__name__)


class Admission:
    """Counts requests running or waiting for the model, refusing more than max_queue at once."""

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
    engines: dict[str, Engine],
    *,
    api_key: str | None = None,
    max_tokens_limit: int = 1024,
    max_queue: int = 8,
    sampling: SamplingSettings | None = None,
    system_prompt: str | None = None,
    grounding: Grounding | None = None,
) -> FastAPI:
    """The HTTP app; engines maps the model names clients send to the engines that answer them.

    max_tokens_limit caps the tokens one request may ask for, max_queue the requests running or waiting
    at once (more get 503), and sampling holds the reply length, temperature and top_p used when a request
    sends none. system_prompt goes before chat requests that bring no system message of their own, as the
    fine-tune saw it in training. With grounding (chat.retrieval), chat requests get the forum's passages in
    their last user message and the reply carries them as `sources`.
    """
    if not engines:
        raise ChatError("create_app needs at least one engine: pass {'model-name': engine}.")
    if max_tokens_limit < 1 or max_queue < 1:
        raise ChatError(
            f"max_tokens_limit and max_queue must be at least 1, got {max_tokens_limit}, {max_queue}."
        )
    defaults = sampling or SamplingSettings()
    if defaults.max_new_tokens > max_tokens_limit:
        raise ChatError(
            f"The default reply length ({defaults.max_new_tokens}, chat.max_new_tokens) is over the per-request "
            f"limit ({max_tokens_limit}, chat.max_request_tokens); lower the first or raise the second."
        )
    app = FastAPI(title="forumtune chat", docs_url=None, redoc_url=None, openapi_url=None)
    admission = Admission(max_queue)
    _add_error_handlers(app)

    @app.get("/", response_class=HTMLResponse)
    async def chat_page() -> str:
        return CHAT_PAGE_HTML

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "models": list(engines),
            "requests_in_flight": admission.in_flight,
            "api_key_required": api_key is not None,
            "retrieval": grounding is not None,
        }

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        _check_api_key(request, api_key)
        return {"object": "list", "data": [_model_card(name) for name in engines]}

    @app.get("/v1/models/{name:path}")
    async def get_model(name: str, request: Request) -> dict[str, Any]:
        _check_api_key(request, api_key)
        _find_engine(engines, name)
        return _model_card(name)

    async def answer(request: Request, kind: Literal["chat", "text"]) -> Response:
        _check_api_key(request, api_key)
        schema = ChatCompletionRequest if kind == "chat" else CompletionRequest
        parsed = parse_request(schema, await request.body())
        engine = _find_engine(engines, parsed.model)
        requested, param = parsed.requested_max_tokens()
        if requested is not None and requested > max_tokens_limit:
            raise ApiError(
                400, f"{param} is {requested}; this server allows at most {max_tokens_limit}.", param=param
            )
        admission.enter()
        handed_to_stream = False
        try:
            generation, sources = await anyio.to_thread.run_sync(
                _prepare_generation, engine, parsed, defaults, system_prompt, grounding
            )
            prefix = "chatcmpl" if kind == "chat" else "cmpl"
            links = isinstance(parsed, ChatCompletionRequest) and parsed.source_links
            meta = ReplyMeta(
                f"{prefix}-{uuid.uuid4().hex}", int(time.time()), parsed.model, kind, sources, links
            )
            if parsed.stream:
                handed_to_stream = True
                return _streaming_reply(generation, meta, parsed.include_usage(), on_close=admission.leave)
            return JSONResponse(await _whole_reply(generation, meta))
        finally:
            if not handed_to_stream:
                admission.leave()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await answer(request, "chat")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await answer(request, "text")

    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return error.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = f"{error.detail} ({request.method} {request.url.path}); this server has {ENDPOINTS}."
        return ApiError(error.status_code, message, headers=error.headers).response()

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        logger.error("unexpected error on %s", request.url.path, exc_info=error)
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


def _find_engine(engines: dict[str, Engine], name: str) -> Engine:
    if name not in engines:
        raise ApiError(
            404,
            f"The model '{name}' does not exist here; use one of: {', '.join(engines)}.",
            param="model",
            code="model_not_found",
        )
    return engines[name]


def _model_card(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": OWNER}


def _prepare_generation(
    engine: Engine,
    request: SamplingRequest,
    defaults: SamplingSettings,
    system_prompt: str | None,
    grounding: Grounding | None = None,
) -> tuple[Generation, list[Source] | None]:
    """Tokenize the prompt and fit the reply into the context; runs on a worker thread. Returns the sources
    put into the prompt (None without retrieval).

    A request that names no max_tokens gets the configured reply length, or less where the context ends.
    """
    sources: list[Source] | None = None
    requested, param = request.requested_max_tokens()
    prompt_param = "messages" if isinstance(request, ChatCompletionRequest) else "prompt"
    try:
        if isinstance(request, ChatCompletionRequest):
            messages = [message.plain() for message in request.messages]
            if system_prompt and not any(message["role"] == "system" for message in messages):
                messages.insert(0, {"role": "system", "content": system_prompt})
            if grounding is not None and request.retrieval:
                grounded = grounding.ground(engine, messages)
                messages, sources = grounded.messages, grounded.sources
            prompt_ids = engine.prompt_ids(messages)
        else:
            assert isinstance(request, CompletionRequest)
            prompt_ids = engine.text_ids(request.prompt_text())
        room = engine.max_context_tokens - len(prompt_ids)
        max_new_tokens = requested if requested is not None else min(defaults.max_new_tokens, room)
        if max_new_tokens > room or room < 1:
            raise ContextTooLongError(
                f"The {prompt_param} take {len(prompt_ids)} tokens and {param}={max_new_tokens} more do not "
                f"fit the {engine.max_context_tokens}-token context; shorten the {prompt_param} or ask for "
                "fewer tokens."
            )
        settings = SamplingSettings(
            max_new_tokens,
            defaults.temperature if request.temperature is None else request.temperature,
            defaults.top_p if request.top_p is None else request.top_p,
            request.seed,
            defaults.repetition_penalty,
        )
        return engine.generation_for_ids(prompt_ids, settings, request.stop or [], threading.Event()), sources
    except ContextTooLongError as error:
        raise ApiError(400, str(error), param=prompt_param, code="context_length_exceeded") from error
    except ChatError as error:
        raise ApiError(400, str(error), param=prompt_param, code="invalid_value") from error


async def _whole_reply(generation: Generation, meta: ReplyMeta) -> dict[str, Any]:
    try:
        text = await anyio.to_thread.run_sync(lambda: "".join(generation), abandon_on_cancel=True)
    except GenerationError as error:
        logger.error("%s", error, exc_info=error.__cause__)
        raise ApiError(500, GENERATION_FAILED, type="server_error") from error
    finally:
        generation.cancel.set()  # stops the model if this request was cancelled meanwhile
    return whole_reply(meta, text, generation)


def _streaming_reply(
    generation: Generation, meta: ReplyMeta, include_usage: bool, on_close: Callable[[], None]
) -> StreamingResponse:
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
    if (opening := opening_chunk(meta)) is not None:
        yield _sse(opening)
    while (item := await pieces.get()) is not None:
        if isinstance(item, BaseException):
            logger.error("%s", item, exc_info=item.__cause__ or item)
            yield _sse(ApiError(500, GENERATION_FAILED, type="server_error").body())
            yield "data: [DONE]\n\n"
            return
        yield _sse(text_chunk(meta, item))
    if links := meta.links_text():
        yield _sse(text_chunk(meta, links))
    yield _sse(closing_chunk(meta, generation))
    if include_usage:
        yield _sse(usage_chunk(meta, generation))
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


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def serve(
    engines: dict[str, Engine],
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    *,
    max_tokens_limit: int = 1024,
    max_queue: int = 8,
    sampling: SamplingSettings | None = None,
    system_prompt: str | None = None,
    log_level: str = "info",
    listening: socket.socket | None = None,
    grounding: Grounding | None = None,
) -> None:
    """Serve the engines over HTTP until interrupted; a host beyond this machine needs an api_key.

    listening is a socket already bound by bind_socket (so a port in use is reported before the model
    loads); without it, host:port is bound here."""
    check_host(host, api_key)
    app = create_app(
        engines,
        api_key=api_key,
        max_tokens_limit=max_tokens_limit,
        max_queue=max_queue,
        sampling=sampling,
        system_prompt=system_prompt,
        grounding=grounding,
    )
    sockets = [listening if listening is not None else bind_socket(host, port)]
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level)).run(sockets=sockets)
