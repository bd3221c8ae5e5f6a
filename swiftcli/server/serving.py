"""Chat and text completions over an AsyncEngine: requests -> engine requests -> OpenAI responses or SSE."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

from swiftcli.config.spec import GenerationConfig
from swiftcli.engines.base import Completion, EngineRequest, RequestResult, check_context_length
from swiftcli.generation.vision import encode_part_messages
from swiftcli.registry.conversation import encode_messages
from swiftcli.server.admission import Slot
from swiftcli.server.media import ChatMedia
from swiftcli.server.prompts import check_scoring_fields, completion_prompts, echoed_tokens, vllm_prompt_logprobs
from swiftcli.server.protocol import ChatCompletionRequest, CompletionRequest
from swiftcli.server.sampling import sampling_config
from swiftcli.server.sse import Choices, framed, merge, prepend, sse, stream_chunk, usage
from swiftcli.server.tools import ChoiceStream, ToolPlan, whole_message


class Serving:
    """Builds engine requests from OpenAI requests and OpenAI responses from engine results."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self._tokens: dict[int, str] = {}  # token id -> text, bounded by the vocabulary

    @property
    def engine(self) -> Any:
        return self.state.engine

    @property
    def defaults(self) -> GenerationConfig:
        """The sampling requests start from: what deploy passed (ServerSettings.generation), else the engine's."""
        given: GenerationConfig | None = self.state.settings.generation
        return given or self.engine.generation_config  # type: ignore[no-any-return]

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
        default = self.state.settings.default_max_tokens or self.defaults.max_new_tokens
        return min(default, room) if default else room

    def chat_requests(self, req: ChatCompletionRequest, adapter: str | None,
                      plan: ToolPlan | None = None, media: ChatMedia | None = None) -> list[EngineRequest]:
        template = self.state.template
        if media is not None:
            prompt_ids = encode_part_messages(template, media.messages, template_kwargs=req.chat_template_kwargs)
        else:
            prompt_ids = encode_messages(template, req.message_dicts(), plan.prompt_tools if plan else None,
                                         req.chat_template_kwargs)
        max_tokens = self._check_room(prompt_ids, req.max_completion_tokens or req.max_tokens)
        logprobs = (req.top_logprobs or 0) if req.logprobs else None
        config = sampling_config(self.defaults, req, max_tokens, logprobs)
        # ignore_eos means "generate max_tokens": the template's end-of-turn markers do not stop it either.
        stop = [] if req.ignore_eos else template.stop_words
        stop_ids = [] if req.ignore_eos else template.stop_token_ids
        stop_ids = [*stop_ids, *(req.stop_token_ids or [])]
        return [EngineRequest(prompt_ids, config, request_id=f"chatcmpl-{uuid.uuid4().hex}", stop=stop,
                              stop_token_ids=stop_ids, adapter=adapter,
                              multi_modal_data=media.engine_data() if media else None)]

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
            config = sampling_config(self.defaults, req, max_tokens, req.logprobs)
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

    def chat_stream(self, req: ChatCompletionRequest, requests: list[EngineRequest], model: str, slot: Slot,
                    stream: AsyncIterator[tuple[int, RequestResult]], first: tuple[int, RequestResult] | None,
                    plan: ToolPlan | None = None) -> AsyncIterator[bytes]:
        return framed(self._chat_events(req, requests, model, slot, prepend(first, stream), plan), stream,
                      slot.release)

    async def _chat_events(self, req: ChatCompletionRequest, requests: list[EngineRequest], model: str, slot: Slot,
                           results: AsyncIterator[tuple[int, RequestResult]], plan: ToolPlan | None
                           ) -> AsyncGenerator[bytes, None]:
        request_id, created = requests[0].request_id, int(time.time())
        tracker = Choices(req.n)
        top = req.top_logprobs or 0
        last: RequestResult | None = None
        parsed = [ChoiceStream(plan) for _ in range(req.n)] if plan is not None and plan.parses else None

        def chunk(index: int, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None
                  ) -> bytes:
            return stream_chunk(request_id, "chat.completion.chunk", created, model, req.include_usage,
                                {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish})

        async for _, result in results:
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

    def completion_stream(self, req: CompletionRequest, requests: list[EngineRequest], prompts: list[str],
                          model: str, slot: Slot, stream: AsyncIterator[tuple[int, RequestResult]],
                          first: tuple[int, RequestResult] | None) -> AsyncIterator[bytes]:
        return framed(self._completion_events(req, requests, prompts, model, slot, prepend(first, stream)),
                      stream, slot.release)

    async def _completion_events(self, req: CompletionRequest, requests: list[EngineRequest], prompts: list[str],
                                 model: str, slot: Slot, results: AsyncIterator[tuple[int, RequestResult]]
                                 ) -> AsyncGenerator[bytes, None]:
        request_id, created = requests[0].request_id.rsplit("-", 1)[0], int(time.time())
        trackers = [Choices(req.n) for _ in prompts]
        top = req.logprobs or 0
        latest: dict[int, RequestResult] = {}

        def chunk(index: int, text: str, finish: str | None, logprobs: Any) -> bytes:
            return stream_chunk(request_id, "text_completion", created, model, req.include_usage,
                                {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish})

        async for p, result in results:
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
