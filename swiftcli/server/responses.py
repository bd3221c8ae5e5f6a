"""POST /v1/responses (OpenAI's Responses API), GET and DELETE /v1/responses/{id}.

A request becomes a Chat Completions request (see turns.py) and its answer becomes output items: `reasoning`
(summary text, when a reasoning parser is set), `message` with `output_text`, and `function_call` with its
`call_id`. Supported: `input` as text or items (messages with input_text/output_text parts, function_call,
function_call_output, reasoning), `instructions`, `max_output_tokens`, `temperature`, `top_p`, function `tools`,
`tool_choice`, `parallel_tool_calls`, `text.format`, `reasoning.effort` (the thinking switch), `store` and
`previous_response_id`, `include: ["reasoning.encrypted_content"]` (the reasoning travels in the item, for clients
that keep no server state). Refused by name: built-in tools, `background`, `truncation: auto`, other `include`
values, files and images, and any other field.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from swiftcli.server.admission import Slot
from swiftcli.server.auth import presented_key
from swiftcli.server.errors import APIError
from swiftcli.server.failures import to_api_error
from swiftcli.server.fields import check_extra_fields
from swiftcli.server.response_store import ResponseStore
from swiftcli.server.sse import framed, prepend, sse
from swiftcli.server.turns import Call, Delta, Turn, TurnResult, chat_request, deltas, prepare, run, thinking_kwargs

# `include` values we honour: the reasoning as an opaque field of its item. It is only base64 (this server keeps no
# secret from its own client); it lets a client that stores nothing send the reasoning back.
ENCRYPTED_REASONING = "reasoning.encrypted_content"

# Efforts that ask a model not to think; the others ask it to.
NO_THINKING_EFFORTS = ("none", "minimal")


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextFormat(_Config):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class TextConfig(_Config):
    format: TextFormat | None = None


class ReasoningConfig(_Config):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    store: bool = True
    previous_response_id: str | None = None
    stream: bool = False
    metadata: dict[str, str] | None = None
    user: str | None = None
    background: bool | None = None
    truncation: Literal["disabled", "auto"] | None = None
    include: list[str] | None = None

    @model_validator(mode="after")
    def _refused(self) -> ResponsesRequest:
        check_extra_fields(self.model_extra or {})
        others = sorted(set(self.include or ()) - {ENCRYPTED_REASONING})
        for name, refused in (("background", self.background), ("truncation", self.truncation == "auto"),
                              (f"include {', '.join(others)}", bool(others))):
            if refused:
                raise ValueError(f"unsupported field(s): {name}: this server does not implement it; remove it")
        return self


# --- request -> chat messages


def _text(value: Any, where: str) -> str:
    """Text content: a string, or parts of type input_text / output_text / text (files and images refused)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise APIError(400, f"{where} must be a string or a list of content parts", param=where)
    texts = []
    for j, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in ("input_text", "output_text", "text", "summary_text", "reasoning_text") or \
                not isinstance(part.get("text"), str):
            raise APIError(400, f"{where}.{j}: content part type {kind!r} is not supported (text parts only)",
                           param=f"{where}.{j}")
        texts.append(part["text"])
    return "".join(texts)


def _field(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise APIError(400, f"{where}.{key} must be a string", param=f"{where}.{key}")
    return value


def _opened(sealed: Any, where: str) -> str | None:
    if sealed is None:
        return None
    try:
        return base64.b64decode(str(sealed), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise APIError(400, f"{where}.encrypted_content was not written by this server",
                       param=f"{where}.encrypted_content") from None


def input_messages(items: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Responses input items -> chat messages (function calls join the assistant message they follow)."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    messages: list[dict[str, Any]] = []
    reasoning: str | None = None
    for i, item in enumerate(items):
        where = f"input.{i}"
        kind = item.get("type", "message" if "role" in item else None)
        last = messages[-1] if messages else None
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise APIError(400, f"{where}.role must be user, system, developer or assistant", param=where)
            message: dict[str, Any] = {"role": role, "content": _text(item.get("content"), f"{where}.content")}
            if role == "assistant" and reasoning is not None:
                message["reasoning_content"], reasoning = reasoning, None
            messages.append(message)
        elif kind == "function_call":
            call = {"id": _field(item, "call_id", where), "type": "function",
                    "function": {"name": _field(item, "name", where), "arguments": _field(item, "arguments", where)}}
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                message = {"role": "assistant", "content": None, "tool_calls": [call]}
                if reasoning is not None:
                    message["reasoning_content"], reasoning = reasoning, None
                messages.append(message)
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": _field(item, "call_id", where),
                             "content": _text(item.get("output"), f"{where}.output")})
        elif kind == "reasoning":
            parts = item.get("content") or item.get("summary") or []
            reasoning = _text(parts, f"{where}.summary") or _opened(item.get("encrypted_content"), where)
        else:
            raise APIError(400, f"{where}: input item type {kind!r} is not supported (message, function_call, "
                           "function_call_output and reasoning are)", param=where)
    return messages


def _tools(req: ResponsesRequest) -> list[dict[str, Any]] | None:
    if req.tools is None:
        return None
    tools = []
    for i, tool in enumerate(req.tools):
        if tool.get("type") != "function":
            raise APIError(400, f"tools.{i}: tool type {tool.get('type')!r} is not supported (function tools only)",
                           param=f"tools.{i}.type")
        function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(choice: str | dict[str, Any] | None) -> Any:
    if choice is None or isinstance(choice, str):
        return choice
    if choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise APIError(400, f"tool_choice of type {choice.get('type')!r} is not supported (none, auto, required or "
                   "a function)", param="tool_choice")


def _response_format(req: ResponsesRequest) -> dict[str, Any] | None:
    fmt = req.text.format if req.text else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": fmt.name, "schema": fmt.schema_, "strict": fmt.strict}}


def chat_body(req: ResponsesRequest, state: Any, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The Chat Completions request this Responses request means."""
    messages = [*history, *input_messages(req.input)]
    if req.instructions:
        messages.insert(0, {"role": "system", "content": req.instructions})
    effort = req.reasoning.effort if req.reasoning else None
    body: dict[str, Any] = {
        "model": req.model, "messages": messages, "max_tokens": req.max_output_tokens,
        "temperature": req.temperature, "top_p": req.top_p, "tools": _tools(req),
        "tool_choice": _tool_choice(req.tool_choice), "parallel_tool_calls": req.parallel_tool_calls,
        "response_format": _response_format(req),
        "chat_template_kwargs": thinking_kwargs(state, None if effort is None else effort not in NO_THINKING_EFFORTS,
                                                "reasoning.effort"),
    }
    return {k: v for k, v in body.items() if v is not None}


# --- answer -> output items


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def reasoning_item(item_id: str, text: str, sealed: bool = False) -> dict[str, Any]:
    item = {"type": "reasoning", "id": item_id, "summary": [{"type": "summary_text", "text": text}],
            "status": "completed"}
    if sealed:
        item["encrypted_content"] = base64.b64encode(text.encode()).decode("ascii")
    return item


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def call_item(item_id: str, call: Call, status: str = "completed") -> dict[str, Any]:
    return {"type": "function_call", "id": item_id, "call_id": call.call_id, "name": call.name,
            "arguments": call.arguments, "status": status}


def output_items(result: TurnResult, sealed: bool = False) -> list[dict[str, Any]]:
    items = []
    if result.reasoning:
        items.append(reasoning_item(_id("rs"), result.reasoning, sealed))
    if result.content or not result.calls:
        items.append(message_item(_id("msg"), result.content))
    items += [call_item(_id("fc"), call) for call in result.calls]
    return items


def assistant_message(result: TurnResult) -> dict[str, Any]:
    """The answer as the chat message a continuation (previous_response_id) starts from."""
    message: dict[str, Any] = {"role": "assistant", "content": result.content or None}
    if result.calls:
        message["tool_calls"] = [{"id": c.call_id, "type": "function",
                                  "function": {"name": c.name, "arguments": c.arguments}} for c in result.calls]
    if result.reasoning:
        message["reasoning_content"] = result.reasoning
    return message


@dataclass
class _Exchange:
    """One request's identity and what its response object repeats from it."""

    req: ResponsesRequest
    response_id: str
    created: int
    model: str
    history: list[dict[str, Any]]  # the conversation before this turn, instructions excluded

    @property
    def sealed(self) -> bool:
        return ENCRYPTED_REASONING in (self.req.include or ())

    def response(self, status: str, output: list[dict[str, Any]], result: TurnResult | None = None
                 ) -> dict[str, Any]:
        req = self.req
        fmt = req.text.format.model_dump(by_alias=True, exclude_none=True) if req.text and req.text.format else \
            {"type": "text"}
        usage = None
        if result is not None:
            usage = {"input_tokens": result.prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
                     "output_tokens": result.output_tokens,
                     "output_tokens_details": {"reasoning_tokens": result.reasoning_tokens},
                     "total_tokens": result.prompt_tokens + result.output_tokens}
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        return {
            "id": self.response_id, "object": "response", "created_at": self.created, "status": status,
            "background": False, "error": None, "incomplete_details": incomplete, "instructions": req.instructions,
            "max_output_tokens": req.max_output_tokens, "model": self.model, "output": output,
            "parallel_tool_calls": req.parallel_tool_calls is not False,
            "previous_response_id": req.previous_response_id,
            "reasoning": req.reasoning.model_dump() if req.reasoning else {"effort": None, "summary": None},
            "store": req.store, "temperature": req.temperature, "text": {"format": fmt},
            "tool_choice": req.tool_choice or ("auto" if req.tools else "none"), "tools": req.tools or [],
            "top_p": req.top_p, "truncation": "disabled", "usage": usage, "user": req.user,
            "metadata": req.metadata or {},
        }

    def finish(self, store: ResponseStore, api_key: str | None, result: TurnResult, output: list[dict[str, Any]]
               ) -> dict[str, Any]:
        status = "incomplete" if result.finish == "length" else "completed"
        body = self.response(status, output, result)
        if self.req.store:
            conversation = [*self.history, *input_messages(self.req.input), assistant_message(result)]
            store.put(api_key, body, conversation)
        return body


class _Events:
    """Responses stream events: `event: TYPE` lines with a sequence_number that grows by one."""

    def __init__(self) -> None:
        self.sequence = 0

    def __call__(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {kind}\n".encode() + sse(data)


@dataclass
class _OpenItem:
    kind: str  # reasoning | message | function_call
    index: int
    item_id: str
    text: str = ""
    call: Call | None = None


class _ItemStream:
    """Turns Deltas into output-item events: one item open at a time, closed when the next kind begins."""

    def __init__(self, events: _Events, sealed: bool) -> None:
        self.ev = events
        self.sealed = sealed
        self.output: list[dict[str, Any]] = []
        self.open: _OpenItem | None = None

    def start(self, kind: str, call: Call | None = None) -> list[bytes]:
        out = self.close()
        index = len(self.output)
        prefix = {"reasoning": "rs", "message": "msg", "function_call": "fc"}[kind]
        item = self.open = _OpenItem(kind, index, _id(prefix), call=call)
        if kind == "reasoning":
            added = {"type": "reasoning", "id": item.item_id, "summary": []}
            out.append(self.ev("response.output_item.added", output_index=index, item=added))
            out.append(self.ev("response.reasoning_summary_part.added", item_id=item.item_id, output_index=index,
                               summary_index=0, part={"type": "summary_text", "text": ""}))
        elif kind == "message":
            added = {**message_item(item.item_id, "", "in_progress"), "content": []}
            out.append(self.ev("response.output_item.added", output_index=index, item=added))
            out.append(self.ev("response.content_part.added", item_id=item.item_id, output_index=index,
                               content_index=0, part={"type": "output_text", "text": "", "annotations": [],
                                                      "logprobs": []}))
        else:
            assert call is not None
            out.append(self.ev("response.output_item.added", output_index=index,
                               item=call_item(item.item_id, Call(call.call_id, call.name), "in_progress")))
        return out

    def feed(self, delta: Delta) -> list[bytes]:
        out: list[bytes] = []
        if delta.kind == "call":
            return self.start("function_call", delta.call)
        kind = {"reasoning": "reasoning", "text": "message", "arguments": "function_call"}[delta.kind]
        if self.open is None or self.open.kind != kind:
            out += self.start(kind)
        item = self.open
        assert item is not None
        item.text += delta.text
        if kind == "reasoning":
            out.append(self.ev("response.reasoning_summary_text.delta", item_id=item.item_id,
                               output_index=item.index, summary_index=0, delta=delta.text))
        elif kind == "message":
            out.append(self.ev("response.output_text.delta", item_id=item.item_id, output_index=item.index,
                               content_index=0, delta=delta.text, logprobs=[]))
        else:
            out.append(self.ev("response.function_call_arguments.delta", item_id=item.item_id,
                               output_index=item.index, delta=delta.text))
        return out

    def close(self) -> list[bytes]:
        item, self.open = self.open, None
        if item is None:
            return []
        out = []
        ids = {"item_id": item.item_id, "output_index": item.index}
        if item.kind == "reasoning":
            part = {"type": "summary_text", "text": item.text}
            out.append(self.ev("response.reasoning_summary_text.done", **ids, summary_index=0, text=item.text))
            out.append(self.ev("response.reasoning_summary_part.done", **ids, summary_index=0, part=part))
            final = reasoning_item(item.item_id, item.text, self.sealed)
        elif item.kind == "message":
            out.append(self.ev("response.output_text.done", **ids, content_index=0, text=item.text, logprobs=[]))
            out.append(self.ev("response.content_part.done", **ids, content_index=0,
                               part={"type": "output_text", "text": item.text, "annotations": [], "logprobs": []}))
            final = message_item(item.item_id, item.text)
        else:
            assert item.call is not None
            call = Call(item.call.call_id, item.call.name, item.text)
            out.append(self.ev("response.function_call_arguments.done", **ids, name=call.name,
                               arguments=call.arguments))
            final = call_item(item.item_id, call)
        out.append(self.ev("response.output_item.done", output_index=item.index, item=final))
        self.output.append(final)
        return out


def _stream_error(events: _Events) -> Callable[[BaseException], bytes]:
    def error(exc: BaseException) -> bytes:
        api = to_api_error(exc, "stream")
        return events("error", code=api.code or api.type, message=api.message, param=api.param)

    return error


async def _stream_events(exchange: _Exchange, events: _Events, state: Any, turn: Turn, slot: Slot,
                         results: AsyncIterator[Any], store: ResponseStore, api_key: str | None
                         ) -> AsyncGenerator[bytes, None]:
    yield events("response.created", response=exchange.response("in_progress", []))
    yield events("response.in_progress", response=exchange.response("in_progress", []))
    items = _ItemStream(events, exchange.sealed)
    result: TurnResult | None = None
    async for part in deltas(state, turn, slot, results):
        if isinstance(part, TurnResult):
            result = part
            continue
        for event in items.feed(part):
            yield event
    for event in items.close():
        yield event
    assert result is not None
    if not items.output:  # nothing was said: still one (empty) message, as in the whole response
        for event in [*items.start("message"), *items.close()]:
            yield event
    body = exchange.finish(store, api_key, result, items.output)
    yield events("response.incomplete" if body["status"] == "incomplete" else "response.completed", response=body)


Respond = Callable[..., Any]


def add_responses_routes(app: FastAPI, state: Any, serving: Any, respond: Respond,
                         guard: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """The Responses routes; `respond` and `guard` are the chat routes' admission and error handling."""
    store = ResponseStore()
    state.response_store = store

    @app.post("/v1/responses")
    @guard
    async def create_response(req: ResponsesRequest, http: Request) -> Response:
        api_key = presented_key(http.scope)
        history: list[dict[str, Any]] = []
        if req.previous_response_id is not None:
            previous = store.get(api_key, req.previous_response_id)
            if previous is None:
                raise APIError(404, f"no stored response with id {req.previous_response_id!r}",
                               param="previous_response_id", code="response_not_found")
            history = [dict(m) for m in previous.messages]
        chat = chat_request(chat_body(req, state, history))
        turn = await prepare(state, serving, chat)
        exchange = _Exchange(req, _id("resp"), int(time.time()), turn.model, history)

        async def full(slot: Slot) -> dict[str, Any]:
            result = await run(state, turn, slot)
            return exchange.finish(store, api_key, result, output_items(result, exchange.sealed))

        def streamer(slot: Slot, stream: Any, first: Any) -> AsyncIterator[bytes]:
            events = _Events()
            body = _stream_events(exchange, events, state, turn, slot, prepend(first, stream), store, api_key)
            return framed(body, stream, slot.release, done=b"", on_error=_stream_error(events))

        return await respond(http, state, req.stream, turn.requests, turn.guided, full=full,  # type: ignore[no-any-return]
                             streamer=streamer, logged=turn.req)

    @app.get("/v1/responses/{response_id}")
    async def get_response(response_id: str, http: Request) -> Response:
        stored = store.get(presented_key(http.scope), response_id)
        if stored is None:
            raise APIError(404, f"no stored response with id {response_id!r}", code="response_not_found")
        return JSONResponse(stored.response)

    @app.delete("/v1/responses/{response_id}")
    async def delete_response(response_id: str, http: Request) -> Response:
        if not store.delete(presented_key(http.scope), response_id):
            raise APIError(404, f"no stored response with id {response_id!r}", code="response_not_found")
        return JSONResponse({"id": response_id, "object": "response", "deleted": True})
