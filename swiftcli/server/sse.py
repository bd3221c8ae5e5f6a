"""Server-sent events: several engine requests merged into one stream, OpenAI's chunk shapes, the per-choice
delta tracker and the error event sent after a stream began."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import Any

from swiftcli.engines.base import Completion, EngineRequest, RequestResult
from swiftcli.server.errors import error_body
from swiftcli.server.failures import to_api_error


async def merge(engine: Any, requests: Sequence[EngineRequest], guided: dict[str, Any] | None
                ) -> AsyncGenerator[tuple[int, RequestResult], None]:
    """Run several engine requests at once and yield (request index, result) as any of them grows."""
    if len(requests) == 1:
        async for result in engine.generate(requests[0], guided=guided):
            yield 0, result
        return
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def pump(i: int, request: EngineRequest) -> None:
        try:
            async for result in engine.generate(request, guided=guided):
                await queue.put((i, result))
        except Exception as exc:
            await queue.put((i, exc))
        finally:
            await queue.put((i, None))

    tasks = [asyncio.ensure_future(pump(i, r)) for i, r in enumerate(requests)]
    try:
        left = len(tasks)
        while left:
            i, item = await queue.get()
            if item is None:
                left -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield i, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def stream_error(exc: BaseException) -> bytes:
    """An SSE event with OpenAI's error envelope for an error raised after streaming began."""
    error = to_api_error(exc, "stream")
    return sse(error_body(error.status, error.message, param=error.param, code=error.code, type=error.type))


def sse(data: Any) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"


class Choices:
    """Tracks each choice's emitted text and tokens so streaming sends only what is new."""

    def __init__(self, count: int) -> None:
        self.chars = [0] * count
        self.tokens = [0] * count
        self.done = [False] * count
        self.started = [False] * count
        self.final: list[Completion | None] = [None] * count

    def delta(self, index: int, out: Completion) -> tuple[str, list[int], list[dict[int, float]] | None]:
        """New text (never half a character), new token ids and their logprobs for one choice."""
        text = out.text if out.finish_reason else out.text.rstrip("\ufffd")
        new_text = text[self.chars[index]:]
        self.chars[index] = max(self.chars[index], len(text))
        new_ids = out.token_ids[self.tokens[index]:]
        new_lps = out.logprobs[self.tokens[index]:] if out.logprobs is not None else None
        self.tokens[index] = len(out.token_ids)
        if out.finish_reason:
            self.done[index] = True
            self.final[index] = out
        return new_text, new_ids, new_lps


def stream_chunk(request_id: str, obj: str, created: int, model: str, include_usage: bool,
                 choice: dict[str, Any]) -> bytes:
    """One SSE chunk of a chat or text completion stream (`usage: null` on each when usage is asked for)."""
    body: dict[str, Any] = {"id": request_id, "object": obj, "created": created, "model": model, "choices": [choice]}
    if include_usage:
        body["usage"] = None
    return sse(body)


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


async def prepend(first: tuple[int, RequestResult] | None, stream: Any
                   ) -> AsyncIterator[tuple[int, RequestResult]]:
    """The result already awaited (to answer errors before streaming starts), then the rest of the stream."""
    if first is not None:
        yield first
    async for item in stream:
        yield item


async def close_stream(stream: Any) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


DONE = b"data: [DONE]\n\n"


async def framed(events: AsyncGenerator[bytes, None], stream: Any, release: Callable[[bool], None],
                 done: bytes = DONE, on_error: Callable[[BaseException], bytes] = stream_error
                 ) -> AsyncIterator[bytes]:
    """A stream's events, then `done` (`[DONE]`; APIs whose streams end with their own last event pass b"").
    An error after the 200 goes in the stream as `on_error`'s event before `done`; whatever happens (the client
    leaving too), the engine stream is closed and `release(finished)` called."""
    finished = False
    try:
        async for event in events:
            yield event
        if done:
            yield done
        finished = True
    except Exception as exc:
        yield on_error(exc)
        if done:
            yield done
    finally:
        await events.aclose()
        await close_stream(stream)
        release(finished)
