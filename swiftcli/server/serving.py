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
from swiftcli.server.tools import ChoiceStream, ToolPlan, whole_message

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
    for name in ("top_p", "top_k", "repetition_penalty", "presence_penalty", "frequency_penalty", "seed",
                 "min_p", "min_tokens", "skip_special_tokens", "include_stop_str_in_output"):
        value = getattr(req, name)
        if value is not None:
            values[name] = value
    if req.logit_bias:
        values["logit_bias"] = logit_bias(req.logit_bias)
    config = base.copy(**values)
    config.stop = [*config.stop, *req.stop_list()]
    return config


def logit_bias(bias: dict[str, float]) -> dict[int, float]:
    """OpenAI's {"token id": bias in [-100, 100]}."""
    out: dict[int, float] = {}
    for key, value in bias.items():
        if not key.lstrip("-").isdigit() or int(key) < 0:
            raise APIError(400, f"logit_bias keys are token ids; {key!r} is not one", param="logit_bias")
        if not -100 <= value <= 100:
            raise APIError(400, f"logit_bias values are in [-100, 100]; got {value}", param="logit_bias")
        out[int(key)] = float(value)
    return out


def guided_decoding(req: SamplingFields) -> dict[str, Any] | None:
    from swiftcli.server.structured import request_constraint

    return request_constraint(req)


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


def stream_error(exc: BaseException) -> bytes:
    """An SSE event with OpenAI's error envelope for an error raised after streaming began."""
    from swiftcli.server.failures import to_api_error

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


class Serving:
    """Builds engine requests from OpenAI requests and OpenAI responses from engine results."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self._tokens: dict[int, str] = {}  # token id -> text, bounded by the vocabulary

    @property
    def engine(self) -> Any:
        return self.state.engine

    def _token(self, token_id: int) -> str:
        text = self._tokens.get(token_id)
        if text is None:
            text = self._tokens[token_id] = str(self.engine.hf_tokenizer.decode([token_id]))
        return text

    async def decode_off_loop(self, outputs: Sequence[Completion], results: Sequence[RequestResult] = ()) -> None:
        """Decode every token that logprobs will name in the tokenizer thread (thousands of decodes would
        otherwise hold the event loop); building the response then only looks them up. `results` adds the
        prompt tokens of echoed or scored prompts."""
        ids = {tid for out in outputs for tid in out.token_ids}
        ids.update(tid for out in outputs for step in out.logprobs or [] for tid in step)
        ids.update(tid for result in results for step in result.prompt_logprobs or [] if step for tid in step)
        await self.state.off_loop(lambda: [self._token(tid) for tid in ids if tid not in self._tokens])

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

    def chat_requests(self, req: ChatCompletionRequest, adapter: str | None,
                      plan: ToolPlan | None = None) -> list[EngineRequest]:
        from swiftcli.registry.conversation import encode_messages

        template = self.state.template
        prompt_ids = encode_messages(template, req.message_dicts(), plan.prompt_tools if plan else None,
                                     req.chat_template_kwargs)
        max_tokens = self._check_room(prompt_ids, req.max_completion_tokens or req.max_tokens)
        logprobs = (req.top_logprobs or 0) if req.logprobs else None
        config = sampling_config(self.engine.generation_config, req, max_tokens, logprobs)
        # ignore_eos means "generate max_tokens": the template's end-of-turn markers do not stop it either.
        stop = [] if req.ignore_eos else template.stop_words
        stop_ids = [] if req.ignore_eos else template.stop_token_ids
        stop_ids = [*stop_ids, *(req.stop_token_ids or [])]
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
                        slot: Slot, guided: dict[str, Any] | None, plan: ToolPlan | None = None) -> dict[str, Any]:
        final: RequestResult | None = None
        async for _, result in merge(self.engine, requests, guided):
            slot.on_result(result)
            slot.output_tokens = result.output_tokens
            final = result
        assert final is not None
        top = req.top_logprobs or 0
        if req.logprobs:
            await self.decode_off_loop(final.outputs)
        choices = []
        for out in final.outputs:
            message: dict[str, Any] = {"role": "assistant", "content": out.text}
            finish = out.finish_reason
            if plan is not None and plan.parses:
                message, finish = whole_message(plan, out.text, finish)
            choices.append({"index": out.index, "message": message,
                            "logprobs": self.chat_logprobs(out.token_ids, out.logprobs, top) if req.logprobs else None,
                            "finish_reason": finish})
        return {"id": requests[0].request_id, "object": "chat.completion", "created": int(time.time()),
                "model": model, "choices": choices, "usage": usage(final.prompt_tokens, final.output_tokens)}

    async def chat_stream(self, req: ChatCompletionRequest, requests: list[EngineRequest], model: str,
                          slot: Slot, stream: AsyncIterator[tuple[int, RequestResult]],
                          first: tuple[int, RequestResult] | None, plan: ToolPlan | None = None
                          ) -> AsyncIterator[bytes]:
        request_id, created = requests[0].request_id, int(time.time())
        tracker = Choices(req.n)
        top = req.top_logprobs or 0
        last: RequestResult | None = None
        parsed = [ChoiceStream(plan) for _ in range(req.n)] if plan is not None and plan.parses else None

        def chunk(index: int, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None
                  ) -> bytes:
            return stream_chunk(request_id, "chat.completion.chunk", created, model, req.include_usage,
                                {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish})

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
                    if parsed is not None:
                        logprobs = self.chat_logprobs(ids, lps, top) if req.logprobs and ids else None
                        so_far = out.text if out.finish_reason else out.text.rstrip("\ufffd")
                        delta = parsed[i].feed(so_far, final=bool(out.finish_reason))
                        finish = parsed[i].finish_reason(out.finish_reason) if out.finish_reason else None
                        if delta or finish or logprobs:
                            yield chunk(i, delta, finish, logprobs)
                    elif text or out.finish_reason:
                        logprobs = self.chat_logprobs(ids, lps, top) if req.logprobs else None
                        yield chunk(i, {"content": text}, out.finish_reason, logprobs)
            if req.include_usage and last is not None:
                yield sse({"id": request_id, "object": "chat.completion.chunk", "created": created,
                           "model": model, "choices": [], "usage": usage(last.prompt_tokens, last.output_tokens)})
            yield b"data: [DONE]\n\n"
            finished = True
        except Exception as exc:  # after the 200: the error goes in the stream, which then ends properly
            yield stream_error(exc)
            yield b"data: [DONE]\n\n"
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
        if req.logprobs is not None or req.prompt_logprobs is not None:
            scored = list(final.values()) if req.echo or req.prompt_logprobs is not None else []
            await self.decode_off_loop([out for result in final.values() for out in result.outputs], scored)
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
            return stream_chunk(request_id, "text_completion", created, model, req.include_usage,
                                {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish})

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
        except Exception as exc:  # after the 200: the error goes in the stream, which then ends properly
            yield stream_error(exc)
            yield b"data: [DONE]\n\n"
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
