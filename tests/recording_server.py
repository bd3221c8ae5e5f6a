"""A small real OpenAI-style HTTP server on 127.0.0.1 that answers chat completions and records each JSON body.

It is the thing under observation in the tests that check what swiftcli sends (`--api_url`, the chat page's
server backend, the client module): it lists one model, answers every chat request with a fixed reply (whole or
streamed), and can be told to refuse the next requests with an OpenAI error envelope.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "recorder"
REPLY = "Paris."


class RecordingServer:
    def __init__(self, key: str | None = None) -> None:
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
            if owner.key is not None and self.headers.get("Authorization") != f"Bearer {owner.key}":
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
            self._send(200, {"object": "list", "data": [entry]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            owner.bodies.append(body)  # refused or not: a test can count what was sent
            if self._refused():
                return
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": "not found"}})
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

    return Handler
