"""Requests + history + template -> engine -> responses, in batch and streaming (ms-swift's API shape).

A request is `{"query": str, "history": [(query, response), ...]?, "system": str?, "structured_outputs": {...}?}`
(see generation.structured for the constraints). All requests of a call
go to the engine at once; results come back in request order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from swiftcli.config.spec import GenerationConfig
from swiftcli.engines.base import Completion, Engine, EngineRequest, RequestResult, generate_all
from swiftcli.errors import InputError
from swiftcli.generation.media import CLI_POLICY, MediaPolicy
from swiftcli.generation.structured import check_structured_output
from swiftcli.generation.vision import encode_vision, has_media
from swiftcli.registry.templates import Template

Request = dict[str, Any]


@dataclass
class InferResult:
    """One request's answer with its usage, for callers that need more than ms-swift's dict."""

    index: int
    query: str
    system: str | None
    history: list[list[str]]
    response: str
    prompt_tokens: int
    output_tokens: int
    finish_reason: str | None

    def as_response(self) -> dict[str, Any]:
        return {"response": self.response, "history": [*self.history, [self.query, self.response]]}


def encode_request(
    template: Template, request: Request, config: GenerationConfig, adapter: str | None = None,
    media_policy: MediaPolicy = CLI_POLICY,
) -> EngineRequest:
    """A request as the engine takes it; `images`/`videos` are loaded under `media_policy` (see generation.media)."""
    query = request.get("query")
    if not isinstance(query, str):
        raise InputError("each request needs a 'query' string")
    multi_modal_data = None
    if has_media(request):
        ids, multi_modal_data, _ = encode_vision(template, request, media_policy,
                                                 enable_thinking=config.enable_thinking)
    else:
        ids = template.encode(query, request.get("history") or None, request.get("system"),
                              enable_thinking=config.enable_thinking)
    guided = request.get("structured_outputs")
    if guided is not None:
        guided = check_structured_output(guided)
    return EngineRequest(ids, config, stop=template.stop_words, stop_token_ids=template.stop_token_ids,
                         adapter=adapter, guided=guided, multi_modal_data=multi_modal_data)


def _results(
    requests: Sequence[Request], encoded: Sequence[EngineRequest], states: Sequence[RequestResult]
) -> list[InferResult]:
    out = []
    for i, (request, state) in enumerate(zip(requests, states, strict=True)):
        first = state.outputs[0]
        out.append(
            InferResult(
                i,
                request["query"],
                request.get("system"),
                [list(pair) for pair in request.get("history") or []],
                first.text,
                state.prompt_tokens,
                state.output_tokens,
                first.finish_reason,
            )
        )
    return out


def infer(
    engine: Engine,
    template: Template,
    requests: Sequence[Request],
    generation_config: GenerationConfig | None = None,
    on_result: Callable[[InferResult], None] | None = None,
) -> list[InferResult]:
    """Run all requests as one batch; on_result is called as each finishes (in completion order)."""
    config = generation_config or engine.generation_config
    encoded = [encode_request(template, r, config) for r in requests]
    index = {e.request_id: i for i, e in enumerate(encoded)}

    def finished(state: RequestResult) -> None:
        if on_result is not None:
            i = index[state.request_id]
            on_result(_results([requests[i]], [encoded[i]], [state])[0])

    states = generate_all(engine, encoded, finished)
    return _results(requests, encoded, states)


def infer_stream(
    engine: Engine,
    template: Template,
    requests: Sequence[Request],
    generation_config: GenerationConfig | None = None,
) -> Iterator[list[InferResult]]:
    """Yield the whole list each time any answer grows; closing the generator aborts the requests."""
    config = generation_config or engine.generation_config
    encoded = [encode_request(template, r, config) for r in requests]
    index = {e.request_id: i for i, e in enumerate(encoded)}
    states = [RequestResult(e.request_id, len(e.prompt_ids), []) for e in encoded]

    for state in states:
        state.outputs = [Completion(0)]
    stream = engine.stream(encoded)
    try:
        for state in stream:
            states[index[state.request_id]] = state
            yield _results(requests, encoded, states)
    finally:
        close = getattr(stream, "close", None)  # a generator: closing it aborts what still runs
        if close is not None:
            close()


def inference_vllm(
    llm_engine: Engine,
    template: Template,
    request_list: Sequence[Request],
    *,
    generation_config: GenerationConfig | None = None,
    use_tqdm: bool = False,
    **_: Any,
) -> list[dict[str, Any]]:
    """ms-swift's inference_vllm: `[{"response", "history"}]` in request order."""
    progress = _tqdm(len(request_list)) if use_tqdm else None
    results = infer(llm_engine, template, request_list, generation_config,
                    on_result=(lambda _: progress.update(1)) if progress else None)
    if progress:
        progress.close()
    return [r.as_response() for r in results]


def inference_stream_vllm(
    llm_engine: Engine,
    template: Template,
    request_list: Sequence[Request],
    *,
    generation_config: GenerationConfig | None = None,
    **_: Any,
) -> Iterator[list[dict[str, Any]]]:
    """ms-swift's inference_stream_vllm: yields the list of `{"response", "history"}` with growing responses."""
    for results in infer_stream(llm_engine, template, request_list, generation_config):
        yield [r.as_response() for r in results]


def inference(
    model: Engine, template: Template, query: str, history: Sequence[Sequence[str]] | None = None,
    system: str | None = None, *, generation_config: GenerationConfig | None = None,
    images: Sequence[Any] | None = None, **_: Any,
) -> tuple[str, list[list[str]]]:
    """ms-swift's pt `inference`: one query, returns (response, history). `images` (paths, URLs, data URIs or PIL
    images) fill the `<image>` tags of the query and history."""
    request: Request = {"query": query, "history": history or [], "system": system, "images": images or []}
    result = infer(model, template, [request], generation_config)[0].as_response()
    return result["response"], result["history"]


def inference_stream(
    model: Engine, template: Template, query: str, history: Sequence[Sequence[str]] | None = None,
    system: str | None = None, *, generation_config: GenerationConfig | None = None,
    images: Sequence[Any] | None = None, **_: Any,
) -> Iterator[tuple[str, list[list[str]]]]:
    """ms-swift's pt `inference_stream`: yields (response so far, history)."""
    request: Request = {"query": query, "history": history or [], "system": system, "images": images or []}
    for results in infer_stream(model, template, [request], generation_config):
        r = results[0].as_response()
        yield r["response"], r["history"]


def _tqdm(total: int) -> Any:
    # lazy: keeps --help and start-up free of tqdm
    from tqdm import tqdm

    return tqdm(total=total, dynamic_ncols=True)
