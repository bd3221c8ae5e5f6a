"""Bounds on what one request may ask of the server, checked before any tokenizer or engine work.

The defaults follow Text Generation Inference's, which have served hostile traffic for years: a 2 MB payload
(`--payload-limit`), 4 stop sequences (`--max-stop-sequences`, also OpenAI's limit) and 128 concurrent requests
(`--max-concurrent-requests`). Our concurrency default is derived from the engine instead (see
`default_concurrency`), because a CPU engine and a GPU engine batch very different numbers of sequences.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from swiftcli.server.errors import APIError, error_body_for

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
TGI_MAX_CONCURRENT = 128
DRAIN_FACTOR = 32  # an oversize body up to this many times the limit is read (and dropped) before the 413


@dataclass(frozen=True)
class ServerLimits:
    """Per-request bounds; `swiftcli deploy` fills it from its options."""

    max_request_bytes: int = 2 * 1024 * 1024
    """Largest request body; larger ones get 413 before they are read (TGI: 2 MB)."""
    max_stop: int = 4
    """Most stop sequences in one request (TGI and OpenAI: 4)."""
    max_stop_chars: int = 256
    """Longest stop sequence, in characters: each is matched against the text after every token."""
    max_prompts: int = 64
    """Most prompts in one /v1/completions request (the same bound as `n`)."""
    max_choices: int = 128
    """Most sequences one request may start, n x prompts (TGI's concurrency default: one request cannot
    fill a server on its own)."""


def default_concurrency(engine: Any) -> int:
    """Requests in flight before 429: twice the sequences the engine batches (one batch running, one
    waiting), so a queue never grows beyond what one batch time drains; TGI's 128 when the engine does not say."""
    seqs = engine.max_num_seqs
    return 2 * int(seqs) if seqs else TGI_MAX_CONCURRENT


def check_capacity(in_flight: int, limit: int | None) -> None:
    """429 before any tokenizer work when the server is full (admission re-checks under the same rule)."""
    if limit is not None and in_flight >= limit:
        raise APIError(429, f"the server is at its limit of {limit} concurrent requests; retry later",
                       code="too_many_requests")


def check_request(req: Any, limits: ServerLimits, vocab_size: int | None, prompts: int = 1) -> None:
    """400 for a request that is well-formed JSON but asks for more than the server allows or the engine
    can represent: lone surrogates, out-of-range seed or top_k, too many or too long stop sequences."""
    for where, text in _strings(req.model_dump(exclude_none=True)):
        if _has_surrogate(text):
            raise APIError(400, f"{where} holds a lone UTF-16 surrogate, which is not valid Unicode text",
                           param=where)
    if req.seed is not None and not INT64_MIN <= req.seed <= INT64_MAX:
        raise APIError(400, f"seed must be a 64-bit signed integer ({INT64_MIN}..{INT64_MAX})", param="seed")
    if req.top_k is not None and vocab_size and req.top_k > vocab_size:
        raise APIError(400, f"top_k must be -1 (off) or at most the vocabulary size {vocab_size}, "
                            f"not {req.top_k}", param="top_k")
    stops = req.stop_list()
    if len(stops) > limits.max_stop:
        raise APIError(400, f"stop holds {len(stops)} sequences; at most {limits.max_stop} are allowed",
                       param="stop")
    for stop in stops:
        if not stop:
            raise APIError(400, "stop sequences must not be empty", param="stop")
        if len(stop) > limits.max_stop_chars:
            raise APIError(400, f"a stop sequence is {len(stop)} characters long; at most "
                                f"{limits.max_stop_chars} are allowed", param="stop")
    if prompts > limits.max_prompts:
        raise APIError(400, f"prompt holds {prompts} prompts; at most {limits.max_prompts} are allowed",
                       param="prompt")
    if prompts * req.n > limits.max_choices:
        raise APIError(400, f"n x prompts is {prompts * req.n}; at most {limits.max_choices} sequences per "
                            "request are allowed", param="n")


def count_prompts(prompt: Any) -> int:
    return 1 if isinstance(prompt, str) else len(prompt)


def _strings(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every string in a dumped request, with its dotted location (e.g. `messages.0.content`)."""
    if isinstance(value, str):
        yield where or "body", value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key, where or "body")
            yield from _strings(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _strings(item, f"{where}.{i}" if where else str(i))


def _has_surrogate(text: str) -> bool:
    # JSON's \ud800 escapes and UTF-8-encoded surrogate bytes both decode (json uses "surrogatepass") to a
    # lone surrogate, which no tokenizer accepts and no UTF-8 encoder writes back.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class BodyLimitMiddleware:
    """413 in the error envelope for a /v1 body over `max_bytes` (pure ASGI: the body is never parsed).

    A declared Content-Length is refused before anything is read; a chunked body is read up to the limit,
    then replayed to the app, so nothing over the limit is ever held in memory.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith("/v1/") or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send, int(declared))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)  # a disconnect: let the app see it
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send, size if message.get("more_body") else None)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)

    async def _refuse(self, scope: Any, receive: Any, send: Any, unread: int | None) -> None:
        from fastapi.responses import JSONResponse

        if unread is not None and unread <= DRAIN_FACTOR * self.max_bytes:
            # Read the rest and drop it: a client still sending when the answer comes and the connection
            # closes sees a reset instead of the 413. Beyond this, closing is cheaper than reading.
            while True:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    break
        message = f"the request body is larger than the server's limit of {self.max_bytes} bytes"
        # Connection: close, because the rest of an unread body would otherwise be parsed as the next request.
        response = JSONResponse(error_body_for(scope.get("path", ""), 413, message, code="request_too_large"),
                                status_code=413,
                                headers={"Connection": "close"})
        await response(scope, receive, send)


def _replay(messages: list[Any], receive: Any) -> Any:
    pending = list(messages)

    async def replay() -> Any:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
