"""POST /v1/messages (Anthropic's Messages API) and /v1/messages/count_tokens.

A request becomes a Chat Completions request (see turns.py): `system` (text or text blocks), `messages` with
text, `tool_use`, `tool_result` and `thinking` blocks, `tools` with `input_schema`, `tool_choice` (auto, any, tool,
none; `disable_parallel_tool_use`), `max_tokens` (required, as Anthropic requires it), `stop_sequences`,
`temperature`, `top_p`, `top_k` and `thinking` (the thinking switch; the reasoning parser gives `thinking` blocks).
Refused by name: images and documents, server tools (web search, code execution, ...), `mcp_servers`,
`container`, and any other field. Errors on these routes come in Anthropic's shape (errors.error_body_for).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from swiftcli.registry.conversation import encode_messages
from swiftcli.server.admission import Slot
from swiftcli.server.errors import APIError, anthropic_error_body
from swiftcli.server.failures import to_api_error
from swiftcli.server.fields import check_extra_fields
from swiftcli.server.sampling import guided_decoding
from swiftcli.server.sse import framed, prepend, sse
from swiftcli.server.tools import plan_tools
from swiftcli.server.turns import Delta, Turn, TurnResult, chat_request, deltas, prepare, run, thinking_kwargs


class _Fields(BaseModel):
    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _no_silent_drops(self) -> _Fields:
        check_extra_fields(self.model_extra or {})
        return self


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class CountTokensRequest(_Fields):
    model: str
    messages: list[MessageIn] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None


class MessagesRequest(CountTokensRequest):
    max_tokens: int = Field(ge=1)
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    metadata: dict[str, Any] | None = None
    output_config: dict[str, Any] | None = None
    # A prompt-caching hint; the engine's prefix cache needs none.
    cache_control: dict[str, Any] | None = None


# --- request -> chat messages


def _block_text(block: dict[str, Any], where: str) -> str:
    if not isinstance(block.get("text"), str):
        raise APIError(400, f"{where}.text must be a string", param=f"{where}.text")
    return str(block["text"])


def _texts(content: Any, where: str) -> str:
    """Text content: a string or text blocks (images and documents refused)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise APIError(400, f"{where} must be a string or a list of blocks", param=where)
    texts = []
    for j, block in enumerate(content):
        if not isinstance(block, dict) or block.get("type") != "text":
            kind = block.get("type") if isinstance(block, dict) else None
            raise APIError(400, f"{where}.{j}: block type {kind!r} is not supported here (text only)",
                           param=f"{where}.{j}")
        texts.append(_block_text(block, f"{where}.{j}"))
    return "".join(texts)


def chat_messages(req: CountTokensRequest) -> list[dict[str, Any]]:
    """Anthropic messages -> chat messages: tool_use blocks become tool_calls, tool_result blocks tool messages,
    thinking blocks the assistant's reasoning_content."""
    messages: list[dict[str, Any]] = []
    if req.system is not None:
        system = _texts(req.system, "system")
        if system:
            messages.append({"role": "system", "content": system})
    for i, message in enumerate(req.messages):
        where = f"messages.{i}.content"
        blocks = [{"type": "text", "text": message.content}] if isinstance(message.content, str) else message.content
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        reasoning: list[str] = []
        for j, block in enumerate(blocks):
            at = f"{where}.{j}"
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                texts.append(_block_text(block, at))
            elif kind == "tool_use" and message.role == "assistant":
                if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str) or \
                        not isinstance(block.get("input"), dict):
                    raise APIError(400, f"{at}: tool_use needs id, name and an input object", param=at)
                calls.append({"id": block["id"], "type": "function",
                              "function": {"name": block["name"], "arguments": json.dumps(block["input"])}})
            elif kind == "tool_result" and message.role == "user":
                if not isinstance(block.get("tool_use_id"), str):
                    raise APIError(400, f"{at}.tool_use_id must be a string", param=f"{at}.tool_use_id")
                results.append({"role": "tool", "tool_call_id": block["tool_use_id"],
                                "content": _texts(block.get("content", ""), f"{at}.content")})
            elif kind == "thinking" and message.role == "assistant":
                if not isinstance(block.get("thinking"), str):
                    raise APIError(400, f"{at}.thinking must be a string", param=f"{at}.thinking")
                reasoning.append(block["thinking"])
            else:
                raise APIError(400, f"{at}: block type {kind!r} is not supported in a {message.role} message",
                               param=at)
        if message.role == "user":
            messages += results
            if texts or not results:
                messages.append({"role": "user", "content": "".join(texts)})
            continue
        reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
        if calls:
            reply["tool_calls"] = calls
        if reasoning:
            reply["reasoning_content"] = "".join(reasoning)
        messages.append(reply)
    return messages


def _tools(req: CountTokensRequest) -> list[dict[str, Any]] | None:
    if req.tools is None:
        return None
    tools = []
    for i, tool in enumerate(req.tools):
        if tool.get("type") not in (None, "custom"):
            raise APIError(400, f"tools.{i}: tool type {tool.get('type')!r} is not supported (client tools with "
                           "input_schema only)", param=f"tools.{i}.type")
        if not isinstance(tool.get("name"), str) or not isinstance(tool.get("input_schema"), dict):
            raise APIError(400, f"tools.{i} needs a name and an input_schema object", param=f"tools.{i}")
        function = {"name": tool["name"], "parameters": tool["input_schema"]}
        if tool.get("description"):
            function["description"] = tool["description"]
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(choice: dict[str, Any] | None) -> tuple[Any, bool | None]:
    """(chat tool_choice, parallel_tool_calls)."""
    if choice is None:
        return None, None
    parallel = False if choice.get("disable_parallel_tool_use") else None
    kind = choice.get("type")
    if kind in ("auto", "none"):
        return kind, parallel
    if kind == "any":
        return "required", parallel
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}, parallel
    raise APIError(400, f"tool_choice type {kind!r} is not supported (auto, any, tool with a name, none)",
                   param="tool_choice")


def _thinking(req: CountTokensRequest, state: Any) -> dict[str, Any] | None:
    if req.thinking is None:
        return None
    kind = req.thinking.get("type")
    if kind == "adaptive":  # the model decides: the template's default
        return None
    if kind not in ("enabled", "disabled"):
        raise APIError(400, f"thinking type {kind!r} is not supported (enabled, disabled or adaptive)",
                       param="thinking.type")
    # budget_tokens is an upper bound that max_tokens already enforces on the whole answer.
    return thinking_kwargs(state, kind == "enabled", "thinking")


def _output_format(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """output_config.format (a JSON schema) as Chat Completions' response_format; `effort` is refused."""
    if not config:
        return None
    unknown = sorted(set(config) - {"format"})
    if unknown:
        raise APIError(400, f"output_config.{unknown[0]} is not supported (format only)",
                       param=f"output_config.{unknown[0]}")
    fmt = config.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise APIError(400, "output_config.format must be {type: json_schema, schema: {...}}",
                       param="output_config.format")
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"]}}


def chat_body(req: CountTokensRequest, state: Any) -> dict[str, Any]:
    choice, parallel = _tool_choice(req.tool_choice)
    body: dict[str, Any] = {"model": req.model, "messages": chat_messages(req), "tools": _tools(req),
                            "tool_choice": choice, "parallel_tool_calls": parallel,
                            "chat_template_kwargs": _thinking(req, state)}
    if isinstance(req, MessagesRequest):
        body.update(max_tokens=req.max_tokens, stop=req.stop_sequences, temperature=req.temperature,
                    top_p=req.top_p, top_k=req.top_k, response_format=_output_format(req.output_config))
    return {k: v for k, v in body.items() if v is not None}


# --- answer -> content blocks


def _input(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        return {}  # cut off by max_tokens: stop_reason says so
    return value if isinstance(value, dict) else {}


def stop_reason(result: TurnResult) -> str:
    if result.calls:
        return "tool_use"
    if result.finish == "length":
        return "max_tokens"
    return "stop_sequence" if result.stop_sequence is not None else "end_turn"


def content_blocks(result: TurnResult) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if result.reasoning:
        blocks.append({"type": "thinking", "thinking": result.reasoning, "signature": ""})
    if result.content or not result.calls:
        blocks.append({"type": "text", "text": result.content})
    blocks += [{"type": "tool_use", "id": c.call_id, "name": c.name, "input": _input(c.arguments)}
               for c in result.calls]
    return blocks


def _message(message_id: str, model: str, content: list[dict[str, Any]], reason: str | None,
             stop_sequence: str | None, input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {"id": message_id, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": reason, "stop_sequence": stop_sequence,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}}


def _event(kind: str, **fields: Any) -> bytes:
    return f"event: {kind}\n".encode() + sse({"type": kind, **fields})


def _stream_error(exc: BaseException) -> bytes:
    api = to_api_error(exc, "stream")
    return _event("error", error=anthropic_error_body(api.status, api.message)["error"])


async def _stream_events(state: Any, turn: Turn, slot: Slot, results: AsyncIterator[Any], message_id: str
                         ) -> AsyncGenerator[bytes, None]:
    prompt_tokens = len(turn.requests[0].prompt_ids)
    yield _event("message_start", message=_message(message_id, turn.model, [], None, None, prompt_tokens, 0))
    yield _event("ping")
    index = -1
    open_kind: str | None = None
    result: TurnResult | None = None

    def start(kind: str, block: dict[str, Any]) -> list[bytes]:
        nonlocal index, open_kind
        out = [_event("content_block_stop", index=index)] if open_kind is not None else []
        index += 1
        open_kind = kind
        return [*out, _event("content_block_start", index=index, content_block=block)]

    async for part in deltas(state, turn, slot, results):
        if isinstance(part, TurnResult):
            result = part
            continue
        out: list[bytes] = []
        if part.kind == "call":
            assert part.call is not None
            out += start("tool_use", {"type": "tool_use", "id": part.call.call_id, "name": part.call.name,
                                      "input": {}})
        elif part.kind == "arguments":
            out.append(_event("content_block_delta", index=index,
                              delta={"type": "input_json_delta", "partial_json": part.text}))
        else:
            out += _text_delta(part, open_kind, start, lambda: index)
        for event in out:
            yield event
    assert result is not None
    if open_kind is None:  # nothing was said: one empty text block, as in the whole message
        for event in start("text", {"type": "text", "text": ""}):
            yield event
    yield _event("content_block_stop", index=index)
    yield _event("message_delta", delta={"stop_reason": stop_reason(result), "stop_sequence": result.stop_sequence},
                 usage={"output_tokens": result.output_tokens})
    yield _event("message_stop")


def _text_delta(part: Delta, open_kind: str | None, start: Callable[[str, dict[str, Any]], list[bytes]],
                index: Callable[[], int]) -> list[bytes]:
    kind = "thinking" if part.kind == "reasoning" else "text"
    out: list[bytes] = []
    if open_kind != kind:
        block = {"type": "thinking", "thinking": "", "signature": ""} if kind == "thinking" else \
            {"type": "text", "text": ""}
        out += start(kind, block)
    delta = {"type": "thinking_delta", "thinking": part.text} if kind == "thinking" else \
        {"type": "text_delta", "text": part.text}
    out.append(_event("content_block_delta", index=index(), delta=delta))
    return out


def add_messages_routes(app: FastAPI, state: Any, serving: Any, respond: Callable[..., Any],
                        guard: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """The Messages routes; `respond` and `guard` are the chat routes' admission and error handling."""

    @app.post("/v1/messages")
    @guard
    async def create_message(req: MessagesRequest, http: Request) -> Response:
        turn = await prepare(state, serving, chat_request(chat_body(req, state)))
        message_id = f"msg_{uuid.uuid4().hex}"

        async def full(slot: Slot) -> dict[str, Any]:
            result = await run(state, turn, slot)
            return _message(message_id, turn.model, content_blocks(result), stop_reason(result),
                            result.stop_sequence, result.prompt_tokens, result.output_tokens)

        def streamer(slot: Slot, stream: Any, first: Any) -> AsyncIterator[bytes]:
            body = _stream_events(state, turn, slot, prepend(first, stream), message_id)
            return framed(body, stream, slot.release, done=b"", on_error=_stream_error)

        return await respond(http, state, req.stream, turn.requests, turn.guided,  # type: ignore[no-any-return]
                             full=full, streamer=streamer, logged=turn.req)

    @app.post("/v1/messages/count_tokens")
    @guard
    async def count_tokens(req: CountTokensRequest) -> Response:
        chat = chat_request(chat_body(req, state))
        state.resolve_model(chat.model)
        plan = plan_tools(chat, state.tool_parser, state.reasoning_parser, guided_decoding(chat))
        ids = await state.off_loop(encode_messages, state.template, chat.message_dicts(), plan.prompt_tools,
                                   chat.chat_template_kwargs)
        return JSONResponse({"input_tokens": len(ids)})
