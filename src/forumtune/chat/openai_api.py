"""The OpenAI wire format: request bodies as validated models, error bodies, and the reply bodies and chunks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError, field_validator

from forumtune.chat.engine import FinishReason, Generation
from forumtune.retrieval.context import Source, markdown_sources

MAX_STOP_STRINGS = 4
# OpenAI's own default for /v1/completions; chat completions default to all the room the context leaves.
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
UNION_MEMBER_TAGS = {"str", "int", "float", "bool", "list", "dict", "TextPart"}


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

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


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


class SamplingRequest(BaseModel):
    """The fields chat and text completions share."""

    model: str
    max_tokens: Annotated[int, Field(ge=1)] | None = None
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
        return self.max_tokens, "max_tokens"

    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


RequestT = TypeVar("RequestT", bound=SamplingRequest)


class ChatCompletionRequest(SamplingRequest):
    messages: Annotated[list[ChatMessageIn], Field(min_length=1)]
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    # forumtune's own fields (the openai client sends them with extra_body): with chat.retrieval on,
    # `retrieval: false` answers without the forum's passages, `source_links: true` appends them to the
    # reply's text as markdown links.
    retrieval: bool = True
    source_links: bool = False

    def requested_max_tokens(self) -> tuple[int | None, str]:
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens, "max_completion_tokens"
        return self.max_tokens, "max_tokens"


class CompletionRequest(SamplingRequest):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]
    max_tokens: Annotated[int, Field(ge=1)] | None = COMPLETIONS_DEFAULT_MAX_TOKENS

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


def parse_request(model: type[RequestT], body: bytes) -> RequestT:
    """The validated request, or an ApiError naming the field at fault."""
    try:
        return model.model_validate_json(body or b"")
    except ValidationError as error:
        first = error.errors()[0]
        if first["type"] == "json_invalid":
            raise ApiError(
                400,
                f"The request body is not valid JSON ({first['msg']}); send a JSON object with the fields "
                "of the OpenAI API.",
                code="invalid_json",
            ) from error
        param = _param_path(first["loc"])
        where = f"{param}: " if param else ""
        raise ApiError(400, f"{where}{first['msg']}", param=param or None, code="invalid_value") from error


def _param_path(location: tuple[int | str, ...]) -> str:
    """messages[0].role from pydantic's ("messages", 0, "role"), leaving out the tags of union members."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not _is_union_member_tag(part):
            path += f".{part}" if path else part
    return path


def _is_union_member_tag(part: str) -> bool:
    # A field that may be of several types (content: str | list[TextPart]) reports which one failed.
    return "[" in part or part in UNION_MEMBER_TAGS or part.startswith("function-")


@dataclass(frozen=True)
class ReplyMeta:
    """What every body of one reply repeats; kind says chat completion or plain text completion."""

    id: str
    created: int
    model: str
    kind: Literal["chat", "text"]
    sources: list[Source] | None = None  # with retrieval: the passages in the prompt, sent as `sources`
    source_links: bool = False  # ... and appended to the text as markdown links

    def sources_field(self) -> dict[str, Any]:
        return {} if self.sources is None else {"sources": [source.as_json() for source in self.sources]}

    def links_text(self) -> str:
        return markdown_sources(self.sources) if self.sources and self.source_links else ""


def whole_reply(meta: ReplyMeta, text: str, generation: Generation) -> dict[str, Any]:
    finish_reason = openai_finish_reason(generation.finish_reason)
    text += meta.links_text()
    if meta.kind == "chat":
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None}
        object_name = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None}
        object_name = "text_completion"
    return {
        **_header(meta, object_name),
        "choices": [{**choice, "finish_reason": finish_reason}],
        "usage": usage(generation),
        **meta.sources_field(),
    }


def opening_chunk(meta: ReplyMeta) -> dict[str, Any] | None:
    """Chat streams open with the assistant's role (and the sources, with retrieval); text streams have no
    opening chunk."""
    return (
        {**_chunk(meta, {"role": "assistant", "content": ""}), **meta.sources_field()}
        if meta.kind == "chat"
        else None
    )


def text_chunk(meta: ReplyMeta, text: str) -> dict[str, Any]:
    return _chunk(meta, {"content": text} if meta.kind == "chat" else {"text": text})


def closing_chunk(meta: ReplyMeta, generation: Generation) -> dict[str, Any]:
    empty = {} if meta.kind == "chat" else {"text": ""}
    return _chunk(meta, empty, openai_finish_reason(generation.finish_reason))


def usage_chunk(meta: ReplyMeta, generation: Generation) -> dict[str, Any]:
    object_name = "chat.completion.chunk" if meta.kind == "chat" else "text_completion"
    return {**_header(meta, object_name), "choices": [], "usage": usage(generation)}


def _chunk(meta: ReplyMeta, content: dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
    if meta.kind == "chat":
        choice: dict[str, Any] = {"index": 0, "delta": content}
        object_name = "chat.completion.chunk"
    else:
        choice = {"index": 0, **content}
        object_name = "text_completion"
    choice = {**choice, "logprobs": None, "finish_reason": finish_reason}
    return {**_header(meta, object_name), "choices": [choice]}


def _header(meta: ReplyMeta, object_name: str) -> dict[str, Any]:
    return {"id": meta.id, "object": object_name, "created": meta.created, "model": meta.model}


def usage(generation: Generation) -> dict[str, int]:
    prompt, completion = generation.prompt_tokens, generation.completion_tokens
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def openai_finish_reason(reason: FinishReason | None) -> str:
    return "length" if reason == "length" else "stop"
