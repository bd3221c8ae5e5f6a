"""A small real OpenAI-style HTTP server on 127.0.0.1 that answers chat completions and records each JSON body.

It is the thing under observation in the tests that check what swiftcli sends (`--api_url`, the chat page's
server backend, the client module): it lists one model, answers every chat request with a fixed reply (whole or
streamed), and can be told to refuse the next requests with an OpenAI error envelope.

`RecordingServer(only="messages")` speaks Anthropic's Messages API alone (its /v1/models in Anthropic's shape, the
key as x-api-key) and `only="responses"` OpenAI's Responses API alone: /v1/chat/completions then answers 404.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "recorder"
REPLY = "Paris."


class RecordingServer:
    def __init__(self, key: str | None = None, only: str | None = None) -> None:
        self.only = only
        self.thinking: str | None = None  # messages: a thinking block before the text, whole or streamed
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []  # each request's, names in lower case
        self.key = key
        self.refuse: tuple[int, str] | None = None  # (status, message) for every request while set
        self.chat_sampling: dict[str, Any] | None = None  # listed in /v1/models, as swiftcli deploy does
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def _handler(owner: RecordingServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

        def _send(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _refused(self) -> bool:
            owner.headers.append({k.lower(): v for k, v in self.headers.items()})
            presented = self.headers.get("x-api-key") if owner.only == "messages" else \
                (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            if owner.key is not None and presented != owner.key:
                self._send(401, {"error": {"message": "invalid API key", "type": "authentication_error"}})
                return True
            if owner.refuse is not None:
                status, message = owner.refuse
                self._send(status, {"error": {"message": message, "type": "invalid_request_error"}})
                return True
            return False

        def do_GET(self) -> None:
            if self._refused():
                return
            if self.path.rstrip("/") != "/v1/models":
                self._send(404, {"error": {"message": "not found"}})
                return
            entry: dict[str, Any] = {"id": MODEL, "object": "model", "created": 0, "owned_by": "test",
                                     "max_model_len": 2048}
            if owner.chat_sampling is not None:
                entry["chat_sampling"] = owner.chat_sampling
            if owner.only == "messages":
                entry = {"id": MODEL, "type": "model", "display_name": MODEL, "created_at": "2026-01-01T00:00:00Z"}
                self._send(200, {"data": [entry], "has_more": False, "first_id": MODEL, "last_id": MODEL})
                return
            self._send(200, {"object": "list", "data": [entry]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            owner.bodies.append(body)  # refused or not: a test can count what was sent
            if self._refused():
                return
            route = {"messages": "/v1/messages", "responses": "/v1/responses"}.get(owner.only or "",
                                                                                   "/v1/chat/completions")
            if self.path.rstrip("/") != route:
                self._send(404, {"error": {"message": "not found"}})
                return
            if owner.only == "messages":
                self._messages(body)
                return
            if owner.only == "responses":
                self._responses(body)
                return
            usage = {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
            if body.get("stream"):
                self._stream(usage)
                return
            self._send(200, {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": MODEL,
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": REPLY}}],
                             "usage": usage})

        def _stream(self, usage: dict[str, int]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": MODEL}
            for piece, reason in (("Paris", None), (".", "stop")):
                chunk = {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": reason}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.write(f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

        def _events(self, events: list[tuple[str, dict[str, Any]]]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for name, data in events:
                self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()
            self.close_connection = True

        def _messages(self, body: dict[str, Any]) -> None:
            thought = [{"type": "thinking", "thinking": owner.thinking, "signature": ""}] if owner.thinking else []
            message = {"id": "msg_1", "type": "message", "role": "assistant", "model": MODEL,
                       "content": [*thought, {"type": "text", "text": REPLY}], "stop_reason": "end_turn",
                       "stop_sequence": None, "usage": {"input_tokens": 7, "output_tokens": 2}}
            if not body.get("stream"):
                self._send(200, message)
                return
            start = {**message, "content": [], "stop_reason": None, "usage": {"input_tokens": 7, "output_tokens": 0}}
            deltas = [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                               "delta": {"type": "text_delta", "text": piece}})
                      for piece in ("Paris", ".")]
            if owner.thinking:
                deltas.insert(0, ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                    "type": "thinking_delta", "thinking": owner.thinking}}))
            self._events([("message_start", {"type": "message_start", "message": start}),
                          ("content_block_start", {"type": "content_block_start", "index": 0,
                                                   "content_block": {"type": "text", "text": ""}}),
                          *deltas,
                          ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                          ("message_delta", {"type": "message_delta", "usage": {"output_tokens": 2},
                                             "delta": {"stop_reason": "end_turn", "stop_sequence": None}}),
                          ("message_stop", {"type": "message_stop"})])

        def _responses(self, body: dict[str, Any]) -> None:
            item = {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": REPLY, "annotations": []}]}
            response = {"id": "resp_1", "object": "response", "created_at": 0, "model": MODEL, "status": "completed",
                        "output": [item], "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
                        "usage": {"input_tokens": 7, "output_tokens": 2, "total_tokens": 9,
                                  "input_tokens_details": {"cached_tokens": 0},
                                  "output_tokens_details": {"reasoning_tokens": 0}}}
            if not body.get("stream"):
                self._send(200, response)
                return
            deltas = [("response.output_text.delta", {"type": "response.output_text.delta", "item_id": "msg_1",
                                                      "output_index": 0, "content_index": 0, "delta": piece,
                                                      "sequence_number": n, "logprobs": []})
                      for n, piece in enumerate(("Paris", "."), 1)]
            self._events([("response.created", {"type": "response.created", "sequence_number": 0,
                                                "response": {**response, "status": "in_progress", "output": []}}),
                          *deltas,
                          ("response.completed", {"type": "response.completed", "sequence_number": 3,
                                                  "response": response})])

    return Handler
