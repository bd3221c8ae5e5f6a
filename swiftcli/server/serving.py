"""Chat and text completions over an AsyncEngine: requests -> engine requests -> OpenAI responses or SSE."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from swiftcli.config.spec import GenerationConfig
from swiftcli.engines.base import Completion, EngineRequest, RequestResult, check_context_length
from swiftcli.server.errors import APIError, error_body
from swiftcli.server.metrics import Metrics
from swiftcli.server.prompts import check_scoring_fields, completion_prompts, echoed_tokens, vllm_prompt_logprobs
from swiftcli.server.protocol import ChatCompletionRequest, ChatMessage, CompletionRequest, SamplingFields

T = TypeVar("T")


class ClientGone(Exception):
    """The client closed the connection before the answer was ready."""


@dataclass
class Slot:
    """One admitted request: holds a concurrency slot and its metrics until released (idempotent)."""

    state: Any
    start: float = field(default_factory=time.perf_counter)
    first_token: bool = False
    released: bool = False
    prompt_tokens: int = 0
    output_tokens: int = 0

    def on_result(self, result: RequestResult) -> None:
        if not self.first_token and result.output_tokens:
            self.first_token = True
            metrics: Metrics = self.state.metrics
            metrics.ttft.observe(time.perf_counter() - self.start)
            metrics.waiting.dec()
            metrics.running.inc()

    def release(self, finished: bool = False) -> None:
        if self.released:
            return
        self.released = True
        self.state.in_flight -= 1
        metrics: Metrics = self.state.metrics
        (metrics.running if self.first_token else metrics.waiting).dec()
        metrics.prompt_tokens.inc(self.prompt_tokens)
        metrics.generation_tokens.inc(self.output_tokens)
        if finished:
            metrics.e2e.observe(time.perf_counter() - self.start)


def admit(state: Any) -> Slot:
    """Take a concurrency slot or answer 429."""
    limit = state.settings.max_concurrent_requests
    if limit is not None and state.in_flight >= limit:
        raise APIError(429, f"the server is at its limit of {limit} concurrent requests; retry later",
                       code="too_many_requests")
    state.in_flight += 1
    state.metrics.waiting.inc()
    return Slot(state)


async def until_disconnected(receive: Any, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it (and so aborting its engine requests) if the client disconnects first."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return

    watcher = asyncio.ensure_future(watch())
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        try:
            await task
        except BaseException:
            pass
        raise ClientGone()
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()


def sampling_config(base: GenerationConfig, req: SamplingFields, max_tokens: int | None,
                    logprobs: int | None) -> GenerationConfig:
    values: dict[str, Any] = {"max_new_tokens": max_tokens, "n": req.n, "ignore_eos": req.ignore_eos,
                              "logprobs": logprobs}
    if req.temperature is not None:
        values.update(temperature=req.temperature, do_sample=req.temperature > 0)
    for name in ("top_p", "top_k", "repetition_penalty", "presence_penalty", "frequency_penalty", "seed"):
        value = getattr(req, name)
        if value is not None:
            values[name] = value
    config = base.copy(**values)
    config.stop = [*config.stop, *req.stop_list()]
    return config


def guided_decoding(req: SamplingFields) -> dict[str, Any] | None:
    fmt = req.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"json_object": True}
    if fmt.json_schema is None or fmt.json_schema.schema_ is None:
        raise APIError(400, "response_format json_schema needs json_schema.schema", param="response_format")
    return {"json": fmt.json_schema.schema_}


def chat_turns(messages: Sequence[ChatMessage]) -> tuple[str | None, list[tuple[str, str]], str]:
    """OpenAI messages -> (system, [(query, response)], query); the last message must be the user's."""
    msgs = list(messages)
    system = None
    if msgs[0].role in ("system", "developer"):
        system = msgs.pop(0).text()
    if not msgs:
        raise APIError(400, "messages need a user message after the system message", param="messages")
    history: list[tuple[str, str]] = []
    expected = "user"
    for i, message in enumerate(msgs):
        if message.role != expected:
            raise APIError(400, f"messages[{i + (system is not None)}] has role {message.role!r}; "
                                f"expected {expected!r} (system first, then user and assistant in turn, "
                                "ending with user)", param="messages")
        expected = "assistant" if expected == "user" else "user"
    if msgs[-1].role != "user":
        raise APIError(400, "the last message must be from the user", param="messages")
    for q, r in zip(msgs[:-1:2], msgs[1:-1:2], strict=True):
        history.append((q.text(), r.text()))
    return system, history, msgs[-1].text()


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


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


class Serving:
    """Builds engine requests from OpenAI requests and OpenAI responses from engine results."""

    def __init__(self, state: Any) -> None:
        self.state = state

    @property
    def engine(self) -> Any:
        return self.state.engine

    def _token(self, token_id: int) -> str:
        return str(self.engine.hf_tokenizer.decode([token_id]))

    def chat_logprobs(self, ids: list[int], lps: list[dict[int, float]] | None, top: int) -> Any:
        if lps is None:
            return None
        content = []
        for tid, step in zip(ids, lps, strict=False):
            token = self._token(tid)
            ranked = sorted(step.items(), key=lambda kv: -kv[1])[:top]
            content.append({
                "token": token, "logprob": max(step.get(tid, -9999.0), -9999.0),
                "bytes": list(token.encode()),
                "top_logprobs": [{"token": (t := self._token(k)), "logprob": max(v, -9999.0),
                                  "bytes": list(t.encode())} for k, v in ranked],
            })
        return {"content": content}

    def completion_logprobs(self, ids: list[int], lps: Sequence[dict[int, float] | None] | None, top: int,
                            offset: int) -> Any:
        if lps is None:
            return None
        tokens: list[str] = []
        token_lps: list[float | None] = []
        tops: list[dict[str, float] | None] = []
        offsets: list[int] = []
        pos = offset
        for tid, step in zip(ids, lps, strict=False):
            token = self._token(tid)
            tokens.append(token)
            offsets.append(pos)
            pos += len(token)
            if step is None:  # an echoed prompt's first token: nothing precedes it
                token_lps.append(None)
                tops.append(None)
                continue
            token_lps.append(max(step.get(tid, -9999.0), -9999.0))
            ranked = sorted(step.items(), key=lambda kv: -kv[1])[:top]
            tops.append({self._token(k): max(v, -9999.0) for k, v in ranked} if top else None)
        return {"tokens": tokens, "token_logprobs": token_lps, "top_logprobs": tops, "text_offset": offsets}

    # --- requests -> engine requests

    def _check_room(self, prompt_ids: list[int], max_tokens: int | None) -> int:
        """max_tokens for the engine: the request's (an error when it cannot fit), else the server's default
        (--max_new_tokens, else the model's generation config) cut to the room left in the context."""
        if max_tokens is not None:
            return check_context_length(len(prompt_ids), max_tokens, self.engine.max_model_len)
        room = check_context_length(len(prompt_ids), None, self.engine.max_model_len)
        default = self.state.settings.default_max_tokens or self.engine.generation_config.max_new_tokens
        return min(default, room) if default else room

    def chat_requests(self, req: ChatCompletionRequest, adapter: str | None) -> list[EngineRequest]:
        template = self.state.template
        system, history, query = chat_turns(req.messages)
        prompt_ids = template.encode(query, history or None, system)
        max_tokens = self._check_room(prompt_ids, req.max_completion_tokens or req.max_tokens)
        logprobs = (req.top_logprobs or 0) if req.logprobs else None
        config = sampling_config(self.engine.generation_config, req, max_tokens, logprobs)
        # ignore_eos means "generate max_tokens": the template's end-of-turn markers do not stop it either.
        stop = [] if req.ignore_eos else template.stop_words
        stop_ids = [] if req.ignore_eos else template.stop_token_ids
        return [EngineRequest(prompt_ids, config, request_id=f"chatcmpl-{uuid.uuid4().hex}", stop=stop,
                              stop_token_ids=stop_ids, adapter=adapter)]

    def completion_requests(self, req: CompletionRequest, adapter: str | None) -> tuple[list[EngineRequest],
                                                                                        list[str]]:
        prompt_logprobs = check_scoring_fields(req)
        prompts = completion_prompts(req, self.engine.hf_tokenizer)
        requests = []
        base_id = f"cmpl-{uuid.uuid4().hex}"
        for i, (_, ids) in enumerate(prompts):
            # max_tokens 0 (scoring only) still runs one step: the engine computes prompt logprobs while it
            # prefills, and the one generated token is not shown.
            max_tokens = self._check_room(ids, req.max_tokens or (1 if req.max_tokens == 0 else None))
            config = sampling_config(self.engine.generation_config, req, max_tokens, req.logprobs)
            requests.append(EngineRequest(ids, config, request_id=f"{base_id}-{i}", adapter=adapter,
                                          prompt_logprobs=prompt_logprobs))
        return requests, [text for text, _ in prompts]

    # --- chat

    async def chat_full(self, req: ChatCompletionRequest, requests: list[EngineRequest], model: str,
                        slot: Slot, guided: dict[str, Any] | None) -> dict[str, Any]:
        final: RequestResult | None = None
        async for _, result in merge(self.engine, requests, guided):
            slot.on_result(result)
            slot.output_tokens = result.output_tokens
            final = result
        assert final is not None
        top = req.top_logprobs or 0
        choices = [{"index": out.index, "message": {"role": "assistant", "content": out.text},
                    "logprobs": self.chat_logprobs(out.token_ids, out.logprobs, top) if req.logprobs else None,
                    "finish_reason": out.finish_reason} for out in final.outputs]
        return {"id": requests[0].request_id, "object": "chat.completion", "created": int(time.time()),
                "model": model, "choices": choices, "usage": usage(final.prompt_tokens, final.output_tokens)}

    async def chat_stream(self, req: ChatCompletionRequest, requests: list[EngineRequest], model: str,
                          slot: Slot, stream: AsyncIterator[tuple[int, RequestResult]],
                          first: tuple[int, RequestResult] | None) -> AsyncIterator[bytes]:
        request_id, created = requests[0].request_id, int(time.time())
        tracker = Choices(req.n)
        top = req.top_logprobs or 0
        last: RequestResult | None = None

        def chunk(index: int, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None
                  ) -> bytes:
            body: dict[str, Any] = {"id": request_id, "object": "chat.completion.chunk", "created": created,
                                    "model": model, "choices": [{"index": index, "delta": delta,
                                                                 "logprobs": logprobs, "finish_reason": finish}]}
            if req.include_usage:
                body["usage"] = None
            return sse(body)

        finished = False
        try:
            async for _, result in _prepend(first, stream):
                slot.on_result(result)
                slot.output_tokens = result.output_tokens
                last = result
                for out in result.outputs:
                    i = out.index
                    if tracker.done[i]:
                        continue
                    if not tracker.started[i]:
                        tracker.started[i] = True
                        yield chunk(i, {"role": "assistant", "content": ""})
                    text, ids, lps = tracker.delta(i, out)
                    if text or out.finish_reason:
                        logprobs = self.chat_logprobs(ids, lps, top) if req.logprobs else None
                        yield chunk(i, {"content": text}, out.finish_reason, logprobs)
            if req.include_usage and last is not None:
                yield sse({"id": request_id, "object": "chat.completion.chunk", "created": created,
                           "model": model, "choices": [], "usage": usage(last.prompt_tokens, last.output_tokens)})
            yield b"data: [DONE]\n\n"
            finished = True
        except APIError as exc:
            yield sse(error_body(exc.status, exc.message))
        finally:
            await _close(stream)
            slot.release(finished)

    # --- completions

    async def completion_full(self, req: CompletionRequest, requests: list[EngineRequest], prompts: list[str],
                              model: str, slot: Slot, guided: dict[str, Any] | None) -> dict[str, Any]:
        final: dict[int, RequestResult] = {}
        counted: dict[int, int] = {}
        async for i, result in merge(self.engine, requests, guided):
            slot.on_result(result)
            counted[i] = result.output_tokens
            slot.output_tokens = sum(counted.values())
            final[i] = result
        choices = []
        top = req.logprobs or 0
        scoring_only = req.max_tokens == 0
        for i, prompt in enumerate(prompts):
            for out in final[i].outputs:
                prefix = prompt if req.echo else ""
                ids, offset = out.token_ids, len(prefix)
                lps: Sequence[dict[int, float] | None] | None = out.logprobs
                if req.echo:
                    ids, lps = echoed_tokens(requests[i].prompt_ids, final[i].prompt_logprobs, out.token_ids,
                                             out.logprobs, scoring_only)
                    offset = 0
                logprobs = (self.completion_logprobs(ids, lps, top, offset)
                            if req.logprobs is not None else None)
                choice = {"index": i * req.n + out.index, "text": prefix + ("" if scoring_only else out.text),
                          "logprobs": logprobs, "finish_reason": out.finish_reason}
                if req.prompt_logprobs is not None:
                    choice["prompt_logprobs"] = vllm_prompt_logprobs(
                        requests[i].prompt_ids, final[i].prompt_logprobs, req.prompt_logprobs, self._token)
                choices.append(choice)
        prompt_tokens = sum(r.prompt_tokens for r in final.values())
        output_tokens = 0 if scoring_only else sum(r.output_tokens for r in final.values())
        return {"id": requests[0].request_id.rsplit("-", 1)[0], "object": "text_completion",
                "created": int(time.time()), "model": model, "choices": choices,
                "usage": usage(prompt_tokens, output_tokens)}

    async def completion_stream(self, req: CompletionRequest, requests: list[EngineRequest], prompts: list[str],
                                model: str, slot: Slot, stream: AsyncIterator[tuple[int, RequestResult]],
                                first: tuple[int, RequestResult] | None) -> AsyncIterator[bytes]:
        request_id, created = requests[0].request_id.rsplit("-", 1)[0], int(time.time())
        trackers = [Choices(req.n) for _ in prompts]
        top = req.logprobs or 0
        latest: dict[int, RequestResult] = {}

        def chunk(index: int, text: str, finish: str | None, logprobs: Any) -> bytes:
            body: dict[str, Any] = {"id": request_id, "object": "text_completion", "created": created,
                                    "model": model, "choices": [{"index": index, "text": text,
                                                                 "logprobs": logprobs, "finish_reason": finish}]}
            if req.include_usage:
                body["usage"] = None
            return sse(body)

        finished = False
        try:
            async for p, result in _prepend(first, stream):
                slot.on_result(result)
                latest[p] = result
                slot.output_tokens = sum(r.output_tokens for r in latest.values())
                tracker = trackers[p]
                for out in result.outputs:
                    j = out.index
                    if tracker.done[j]:
                        continue
                    prefix = ""
                    if not tracker.started[j]:
                        tracker.started[j] = True
                        prefix = prompts[p] if req.echo else ""
                    offset = tracker.chars[j] + (len(prompts[p]) if req.echo else 0)
                    text, ids, new_lps = tracker.delta(j, out)
                    lps: Sequence[dict[int, float] | None] | None = new_lps
                    if req.max_tokens == 0:  # scoring only: the one token generated is not shown
                        text, ids, lps = "", [], []
                    if prefix:  # the echoed prompt, with its tokens' logprobs, comes with the first chunk
                        ids, lps = echoed_tokens(requests[p].prompt_ids, result.prompt_logprobs, ids, lps, False)
                        offset = 0
                    if prefix or text or out.finish_reason:
                        logprobs = (self.completion_logprobs(ids, lps, top, offset)
                                    if req.logprobs is not None else None)
                        yield chunk(p * req.n + j, prefix + text, out.finish_reason, logprobs)
            if req.include_usage:
                prompt_tokens = sum(r.prompt_tokens for r in latest.values())
                output_tokens = sum(r.output_tokens for r in latest.values())
                yield sse({"id": request_id, "object": "text_completion", "created": created, "model": model,
                           "choices": [], "usage": usage(prompt_tokens, output_tokens)})
            yield b"data: [DONE]\n\n"
            finished = True
        except APIError as exc:
            yield sse(error_body(exc.status, exc.message))
        finally:
            await _close(stream)
            slot.release(finished)


async def _prepend(first: tuple[int, RequestResult] | None, stream: Any
                   ) -> AsyncIterator[tuple[int, RequestResult]]:
    """The result already awaited (to answer errors before streaming starts), then the rest of the stream."""
    if first is not None:
        yield first
    async for item in stream:
        yield item


async def _close(stream: Any) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
