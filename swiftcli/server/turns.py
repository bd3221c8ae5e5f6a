"""One assistant turn for the APIs beside Chat Completions (OpenAI Responses, Anthropic Messages).

Each of them is translated into a ChatCompletionRequest and runs the chat path as it is: the same template,
sampling, tool plan, reasoning parser and structured outputs. What comes back is dialect-neutral: the parts of the
answer as they grow (`Delta`) and the finished turn (`TurnResult`), which each API then shapes as its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from swiftcli.engines.base import Completion, EngineRequest, RequestResult
from swiftcli.server.admission import Slot
from swiftcli.server.errors import APIError
from swiftcli.server.limits import check_capacity, check_request
from swiftcli.server.protocol import ChatCompletionRequest
from swiftcli.server.sampling import guided_decoding
from swiftcli.server.sse import merge
from swiftcli.server.tools import ChoiceStream, ToolPlan, plan_tools, whole_message


@dataclass
class Turn:
    """A translated request, ready for the engine."""

    req: ChatCompletionRequest
    requests: list[EngineRequest]
    plan: ToolPlan
    model: str

    @property
    def guided(self) -> dict[str, Any] | None:
        return self.plan.guided


@dataclass
class Call:
    call_id: str
    name: str
    arguments: str = ""


@dataclass
class TurnResult:
    """The finished turn: `finish` is the chat path's finish_reason (stop, length, tool_calls, abort)."""

    reasoning: str | None
    content: str
    calls: list[Call]
    finish: str
    stop_sequence: str | None
    prompt_tokens: int
    output_tokens: int
    reasoning_tokens: int


@dataclass
class Delta:
    """New text of the answer: `kind` is "reasoning", "text", "call" (a new call: `call`) or "arguments" (more
    of call `index`'s arguments)."""

    kind: str
    text: str = ""
    index: int = 0
    call: Call | None = None


def chat_request(body: dict[str, Any]) -> ChatCompletionRequest:
    """The translated request; a field the translation cannot express is a 400 naming it."""
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        raise APIError(400, f"{where}: {message}" if where else message, param=where or None) from None


def thinking_kwargs(state: Any, want: bool | None, param: str) -> dict[str, Any] | None:
    """chat_template_kwargs for a request's thinking switch (Responses' reasoning.effort, Anthropic's thinking).

    With a switch in the template it is set; without one, "do not think" holds for a model that never thinks and
    "think" for one that always does (a reasoning parser is set); the other two cannot be honoured.
    """
    if want is None:
        return None
    if state.template.has_thinking_switch:
        return {"enable_thinking": want}
    always = state.reasoning_parser is not None
    if want == always:
        return None
    if want:
        raise APIError(400, f"{param}: this model has no thinking mode", param=param)
    raise APIError(400, f"{param}: this model always thinks and cannot be asked not to", param=param)


async def prepare(state: Any, serving: Any, req: ChatCompletionRequest) -> Turn:
    """The chat route's checks and encoding, for a translated request."""
    adapter = state.resolve_model(req.model)
    check_capacity(state.in_flight, state.settings.max_concurrent_requests)
    check_request(req, state.settings.limits, state.vocab_size)
    plan = plan_tools(req, state.tool_parser, state.reasoning_parser, guided_decoding(req))
    requests = await state.off_loop(serving.chat_requests, req, adapter, plan)
    return Turn(req, requests, plan, req.model or state.model_id)


def matched_stop(tokenizer: Any, out: Completion, stops: list[str]) -> str | None:
    """Which of the request's stop sequences ended the answer (None: end of turn, length, or none given).

    The engine cuts a stop string out of the text but keeps the tokens that held it: decoded, they show it."""
    if out.finish_reason != "stop" or not stops or not out.token_ids:
        return None
    decoded = str(tokenizer.decode(out.token_ids, skip_special_tokens=True))
    if decoded == out.text:
        return None
    found = [(decoded.find(s, max(0, len(out.text) - len(s))), s) for s in stops]
    found = [(i, s) for i, s in found if i >= 0]
    return min(found)[1] if found else None


def _counted(tokenizer: Any, text: str | None) -> int:
    # The engine counts output tokens as a whole; the reasoning's share is its text re-tokenized.
    return len(tokenizer.encode(text, add_special_tokens=False)) if text else 0


def _finished(state: Any, turn: Turn, final: RequestResult, reasoning: str | None, content: str,
              calls: list[Call], finish: str) -> TurnResult:
    out = final.outputs[0]
    tokenizer = state.engine.hf_tokenizer
    stop = matched_stop(tokenizer, out, turn.req.stop_list()) if not calls else None
    return TurnResult(reasoning, content, calls, finish, stop, final.prompt_tokens, final.output_tokens,
                      _counted(tokenizer, reasoning))


async def run(state: Any, turn: Turn, slot: Slot) -> TurnResult:
    """The whole turn (non-streaming), parsed exactly as the chat path parses it."""
    final: RequestResult | None = None
    async for _, result in merge(state.engine, turn.requests, turn.guided):
        slot.on_result(result)
        slot.output_tokens = result.output_tokens
        final = result
    assert final is not None
    out = final.outputs[0]
    message, finish = whole_message(turn.plan, out.text, out.finish_reason)
    calls = [Call(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls", [])]
    return _finished(state, turn, final, message.get("reasoning_content"), message.get("content") or "", calls,
                     finish or "stop")


@dataclass
class _Accumulated:
    reasoning: str = ""
    content: str = ""
    calls: list[Call] = field(default_factory=list)
    done: bool = False


async def deltas(state: Any, turn: Turn, slot: Slot, results: AsyncIterator[tuple[int, RequestResult]]
                 ) -> AsyncIterator[Delta | TurnResult]:
    """The turn as it grows: `Delta`s, then the `TurnResult` (the same parsing as the chat stream)."""
    parsed = ChoiceStream(turn.plan)
    seen = _Accumulated()
    last: RequestResult | None = None
    async for _, result in results:
        slot.on_result(result)
        slot.output_tokens = result.output_tokens
        last = result
        out = result.outputs[0]
        if seen.done:
            continue
        final = seen.done = bool(out.finish_reason)
        delta = parsed.feed(out.text if final else out.text.rstrip("\ufffd"), final=final)
        if delta.get("reasoning_content"):
            seen.reasoning += delta["reasoning_content"]
            yield Delta("reasoning", delta["reasoning_content"])
        if delta.get("content"):
            seen.content += delta["content"]
            yield Delta("text", delta["content"])
        for call in delta.get("tool_calls", []):
            index = call["index"]
            function = call.get("function", {})
            if "id" in call:
                seen.calls.append(Call(call["id"], function["name"]))
                yield Delta("call", index=index, call=seen.calls[index])
            if function.get("arguments"):
                seen.calls[index].arguments += function["arguments"]
                yield Delta("arguments", function["arguments"], index=index)
    assert last is not None
    finish = parsed.finish_reason(last.outputs[0].finish_reason or "stop")
    yield _finished(state, turn, last, seen.reasoning or None, seen.content, seen.calls, finish)
