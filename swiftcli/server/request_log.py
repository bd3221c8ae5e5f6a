"""`deploy --log_requests FILE`: a record of each answered request, and ratings of them.

The record is built from what the client received: the JSON body of a whole answer, or the events of a stream
folded as they pass (so a stream is logged once, when it ends, and a cancelled one with what was sent before the
client left). Every route's answer is reduced to the same shape: per choice the text, the reasoning, the tool
calls and the finish reason. The request side is the chat messages (for /v1/responses and /v1/messages, as
translated to chat messages) or the completion prompt, and the sampling the engine ran with. Headers are never
read, so neither the API key nor any other credential reaches the log.

`POST /v1/requests/{id}/rating` with `{"rating": NUMBER, "preferred": "TEXT", "comment": "TEXT"}` (at least one
of rating and preferred) appends a rating record for a request this server logged.
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from swiftcli.data.request_log import RequestLogConfig, RequestLogWriter
from swiftcli.server.errors import APIError

ROUTES = {"/v1/chat/completions": "chat", "/v1/completions": "completions", "/v1/responses": "responses",
          "/v1/messages": "messages"}
# Ids a rating may name: the requests this server logged, the newest this many.
REMEMBERED_IDS = 100_000


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class RatingRequest(BaseModel):
    """A client's judgement of an answer: `rating` (positive: good, negative: bad; e.g. 1 / -1 or a 1-5
    score), `preferred` (the answer it should have given), `comment` (free text)."""

    model_config = ConfigDict(extra="forbid")

    rating: int | float | None = None
    preferred: str | None = None
    comment: str | None = None

    @field_validator("rating")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("rating must be a finite number")
        return value

    @model_validator(mode="after")
    def _something(self) -> RatingRequest:
        if self.rating is None and not self.preferred:
            raise ValueError("give a rating (a number) or a preferred answer, or both")
        return self


class Answer:
    """The answer's choices as they accumulate: text, reasoning, tool calls and finish reason by index."""

    def __init__(self) -> None:
        self.choices: dict[int, dict[str, Any]] = {}
        self.id: str | None = None
        self.error: str | None = None

    def choice(self, index: int) -> dict[str, Any]:
        return self.choices.setdefault(index, {"text": "", "reasoning": "", "tool_calls": [],
                                               "finish_reason": None})

    def calls(self, index: int) -> list[dict[str, Any]]:
        return self.choice(index)["tool_calls"]  # type: ignore[no-any-return]

    def summary(self) -> list[dict[str, Any]]:
        out = []
        for index in sorted(self.choices):
            choice = dict(self.choices[index])
            choice["reasoning"] = choice["reasoning"] or None
            choice["tool_calls"] = [{"name": c.get("name"), "arguments": c.get("arguments", "")}
                                    for c in choice["tool_calls"]]
            out.append({"index": index, **choice})
        return out


def read_body(route: str, body: dict[str, Any], answer: Answer) -> None:
    """A whole answer's JSON body into `answer`."""
    answer.id = body.get("id")
    if route == "chat":
        for choice in body.get("choices", []):
            message, into = choice.get("message") or {}, answer.choice(choice.get("index", 0))
            into["text"] = message.get("content") or ""
            into["reasoning"] = message.get("reasoning_content") or ""
            into["tool_calls"] = [dict(c.get("function") or {}) for c in message.get("tool_calls") or []]
            into["finish_reason"] = choice.get("finish_reason")
    elif route == "completions":
        for choice in body.get("choices", []):
            into = answer.choice(choice.get("index", 0))
            into["text"], into["finish_reason"] = choice.get("text", ""), choice.get("finish_reason")
    elif route == "responses":
        into = answer.choice(0)
        for item in body.get("output", []):
            if item.get("type") == "message":
                into["text"] += "".join(p.get("text", "") for p in item.get("content", []))
            elif item.get("type") == "reasoning":
                into["reasoning"] += "".join(p.get("text", "") for p in item.get("summary", []))
            elif item.get("type") == "function_call":
                into["tool_calls"].append({"name": item.get("name"), "arguments": item.get("arguments", "")})
        into["finish_reason"] = body.get("status")
    else:
        into = answer.choice(0)
        for block in body.get("content", []):
            if block.get("type") == "text":
                into["text"] += block.get("text", "")
            elif block.get("type") == "thinking":
                into["reasoning"] += block.get("thinking", "")
            elif block.get("type") == "tool_use":
                into["tool_calls"].append({"name": block.get("name"), "arguments": json.dumps(block.get("input"))})
        into["finish_reason"] = body.get("stop_reason")


class StreamFold:
    """Folds a route's server-sent events, as bytes, into an Answer."""

    def __init__(self, route: str) -> None:
        self.route = route
        self.answer = Answer()
        self.buffer = b""
        self.blocks: dict[int, str] = {}  # messages: content block index -> kind

    def feed(self, chunk: bytes) -> None:
        self.buffer += chunk
        while b"\n\n" in self.buffer:
            event, self.buffer = self.buffer.split(b"\n\n", 1)
            for line in event.split(b"\n"):
                if line.startswith(b"data: ") and line != b"data: [DONE]":
                    try:
                        data = json.loads(line[6:])
                    except ValueError:
                        continue
                    if isinstance(data, dict):
                        self._event(data)

    def _event(self, data: dict[str, Any]) -> None:
        if "error" in data and self.route in ("chat", "completions") or data.get("type") == "error":
            error = data.get("error") or data
            self.answer.error = str(error.get("message") if isinstance(error, dict) else error)
            return
        getattr(self, f"_{self.route}")(data)

    def _chat(self, data: dict[str, Any]) -> None:
        self.answer.id = self.answer.id or data.get("id")
        for choice in data.get("choices", []):
            into, delta = self.answer.choice(choice.get("index", 0)), choice.get("delta") or {}
            into["text"] += delta.get("content") or ""
            into["reasoning"] += delta.get("reasoning_content") or ""
            for call in delta.get("tool_calls") or []:
                calls, function = into["tool_calls"], call.get("function") or {}
                while len(calls) <= call.get("index", 0):
                    calls.append({"name": None, "arguments": ""})
                target = calls[call.get("index", 0)]
                target["name"] = function.get("name") or target["name"]
                target["arguments"] += function.get("arguments") or ""
            into["finish_reason"] = choice.get("finish_reason") or into["finish_reason"]

    def _completions(self, data: dict[str, Any]) -> None:
        self.answer.id = self.answer.id or data.get("id")
        for choice in data.get("choices", []):
            into = self.answer.choice(choice.get("index", 0))
            into["text"] += choice.get("text") or ""
            into["finish_reason"] = choice.get("finish_reason") or into["finish_reason"]

    def _responses(self, data: dict[str, Any]) -> None:
        kind, into = data.get("type"), self.answer.choice(0)
        if kind in ("response.created", "response.in_progress"):
            self.answer.id = data.get("response", {}).get("id")
        elif kind in ("response.completed", "response.incomplete"):
            self.answer.choices.clear()
            read_body("responses", data.get("response") or {}, self.answer)
        elif kind == "response.output_text.delta":
            into["text"] += data.get("delta", "")
        elif kind == "response.reasoning_summary_text.delta":
            into["reasoning"] += data.get("delta", "")
        elif kind == "response.output_item.added" and data.get("item", {}).get("type") == "function_call":
            into["tool_calls"].append({"name": data["item"].get("name"), "arguments": ""})
        elif kind == "response.function_call_arguments.delta" and into["tool_calls"]:
            into["tool_calls"][-1]["arguments"] += data.get("delta", "")

    def _messages(self, data: dict[str, Any]) -> None:
        kind, into = data.get("type"), self.answer.choice(0)
        if kind == "message_start":
            self.answer.id = data.get("message", {}).get("id")
        elif kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                into["tool_calls"].append({"name": block.get("name"), "arguments": ""})
        elif kind == "content_block_delta":
            delta = data.get("delta") or {}
            into["text"] += delta.get("text", "") if delta.get("type") == "text_delta" else ""
            into["reasoning"] += delta.get("thinking", "") if delta.get("type") == "thinking_delta" else ""
            if delta.get("type") == "input_json_delta" and into["tool_calls"]:
                into["tool_calls"][-1]["arguments"] += delta.get("partial_json", "")
        elif kind == "message_delta":
            into["finish_reason"] = (data.get("delta") or {}).get("stop_reason")


class RequestLog:
    """The server's request log: records built here, written by the data layer's writer thread."""

    def __init__(self, config: RequestLogConfig) -> None:
        self.writer = RequestLogWriter(config)
        self.known: OrderedDict[str, None] = OrderedDict()

    def start(self, path: str, requests: list[Any], guided: dict[str, Any] | None, stream: bool, source: Any,
              model: str) -> Recording:
        return Recording(self, ROUTES.get(path, path), requests, guided, stream, source, model)

    def add(self, record: dict[str, Any]) -> None:
        self.known[record["id"]] = None
        while len(self.known) > REMEMBERED_IDS:
            self.known.popitem(last=False)
        self.writer.write(record)

    def rate(self, request_id: str, rating: RatingRequest) -> dict[str, Any]:
        if request_id not in self.known:
            raise APIError(404, f"no logged request with id {request_id!r} (ratings name requests this server "
                           "answered since it started)", code="request_not_found")
        record = {"type": "rating", "id": request_id, "time": now_iso(), **rating.model_dump(exclude_none=True)}
        self.writer.write(record)
        return record

    def close(self) -> None:
        self.writer.close()


class Recording:
    """One request on its way: `finished(body, slot)`, `cancelled(slot)` or `stream(events, slot)`."""

    def __init__(self, log: RequestLog, route: str, requests: list[Any], guided: dict[str, Any] | None,
                 stream: bool, source: Any, model: str) -> None:
        self.log, self.route, self.requests, self.guided, self.is_stream = log, route, requests, guided, stream
        self.source, self.model = source, model
        self.time = now_iso()
        self.fold = StreamFold(route)

    def finished(self, body: dict[str, Any], slot: Any) -> None:
        read_body(self.route, body, self.fold.answer)
        self._write("finished", slot)

    def cancelled(self, slot: Any) -> None:
        self._write("cancelled", slot)

    async def stream(self, events: AsyncIterator[bytes], slot: Any) -> AsyncIterator[bytes]:
        """The stream's events, unchanged, folded on the way; the record is written when it ends or is
        cancelled (the client left)."""
        status = "cancelled"
        try:
            async for event in events:
                self.fold.feed(event)
                yield event
            status = "error" if self.fold.answer.error else "finished"
        finally:
            self._write(status, slot)
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()

    def _write(self, status: str, slot: Any) -> None:
        answer = self.fold.answer
        choices = answer.summary()
        first = choices[0] if choices else {"text": "", "reasoning": None, "tool_calls": [], "finish_reason": None}
        record: dict[str, Any] = {
            "type": "request", "id": answer.id or self._fallback_id(), "time": self.time, "route": self.route,
            "model": self.model, "stream": self.is_stream, "status": status,
            **request_side(self.source),
            "sampling": sampling_of(self.requests, self.guided),
            "answer": {"text": first["text"], "reasoning": first["reasoning"], "tool_calls": first["tool_calls"]},
            "finish_reason": first["finish_reason"],
            "usage": {"prompt_tokens": slot.prompt_tokens, "completion_tokens": slot.output_tokens},
            "latency_s": round(time.perf_counter() - slot.start, 4),
        }
        if len(choices) > 1:
            record["choices"] = choices
        if answer.error:
            record["error"] = answer.error
        self.log.add(record)

    def _fallback_id(self) -> str:
        request_id: str = self.requests[0].request_id
        return request_id.rsplit("-", 1)[0] if self.route == "completions" else request_id


def request_side(source: Any) -> dict[str, Any]:
    """The messages (chat-shaped routes) or the prompt (completions), and the tools offered."""
    if source is None:
        return {}
    if hasattr(source, "message_dicts"):
        side: dict[str, Any] = {"messages": source.message_dicts()}
        if getattr(source, "tools", None):
            side["tools"] = [t.model_dump(exclude_none=True) for t in source.tools]
        return side
    return {"prompt": getattr(source, "prompt", None)}


def sampling_of(requests: list[Any], guided: dict[str, Any] | None) -> dict[str, Any]:
    """The sampling the engine ran with (the request's values over the server's defaults)."""
    config = requests[0].config.to_dict()
    config = {k: v for k, v in config.items() if v is not None}
    if guided or requests[0].guided:
        config["structured_output"] = guided or requests[0].guided
    if requests[0].adapter:
        config["adapter"] = requests[0].adapter
    return config


def install_request_log(app: FastAPI, state: Any, config: RequestLogConfig | None) -> RequestLog | None:
    """Open the log (None: logging is off) and add the rating route (404 while logging is off)."""
    log = RequestLog(config) if config is not None else None

    @app.post("/v1/requests/{request_id}/rating")
    async def rate(request_id: str, body: RatingRequest) -> JSONResponse:
        if log is None:
            raise APIError(404, "this server keeps no request log (deploy --log-requests FILE)",
                           code="request_log_off")
        record = log.rate(request_id, body)
        return JSONResponse({"object": "request.rating", **{k: v for k, v in record.items() if k != "type"}})

    return log
