"""The Engine protocol (offline) and AsyncEngine protocol (servers) every backend implements, and the
request/result types they share."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from swiftcli.config.spec import GenerationConfig, ModelSpec
from swiftcli.errors import ContextLengthError

_ids = itertools.count()


def new_request_id(prefix: str = "req") -> str:
    return f"{prefix}-{next(_ids)}"


@dataclass
class EngineRequest:
    """One prompt, already encoded by a template, with its sampling settings."""

    prompt_ids: list[int]
    config: GenerationConfig
    request_id: str = field(default_factory=new_request_id)
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    adapter: str | None = None
    # A structured-output constraint in vLLM's StructuredOutputsParams names: {"json" | "regex" | "choice" |
    # "grammar" | "json_object": ...}.
    guided: dict[str, Any] | None = None
    # Log-probabilities of the prompt's own tokens (scoring), with this many alternatives per position.
    prompt_logprobs: int | None = None
    # The data-parallel replica to run on (engines.data_parallel); None lets the engine choose.
    replica: int | None = None


@dataclass
class Completion:
    """One candidate answer; text and token_ids grow while streaming."""

    index: int
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    logprobs: list[dict[int, float]] | None = None


@dataclass
class RequestResult:
    """A request's state: cumulative outputs, and whether it is finished."""

    request_id: str
    prompt_tokens: int
    outputs: list[Completion]
    finished: bool = False
    # One entry per prompt token when the request asked for prompt_logprobs; the first is None (nothing
    # precedes it). Each maps the token itself and the top alternatives to their log-probabilities.
    prompt_logprobs: list[dict[int, float] | None] | None = None

    @property
    def output_tokens(self) -> int:
        return sum(len(o.token_ids) for o in self.outputs)


class Engine(Protocol):
    """A loaded model that turns encoded requests into streamed results."""

    backend: str
    spec: ModelSpec
    hf_tokenizer: Any
    generation_config: GenerationConfig
    max_model_len: int

    def stream(self, requests: Sequence[EngineRequest]) -> Iterator[RequestResult]:
        """Submit all requests at once and yield each one's cumulative state as it changes.

        Closing the iterator early aborts the requests still running.
        """
        ...

    def abort(self, request_ids: Sequence[str]) -> None: ...

    def close(self) -> None: ...


class AsyncEngine(Protocol):
    """A loaded model serving many concurrent requests from one event loop."""

    backend: str
    spec: ModelSpec
    hf_tokenizer: Any
    generation_config: GenerationConfig
    max_model_len: int

    @property
    def lora_names(self) -> list[str]: ...

    def generate(self, request: EngineRequest, *, guided: dict[str, Any] | None = None
                 ) -> AsyncIterator[RequestResult]:
        """Yield the request's cumulative state as it grows; the last one has `finished=True`.

        `guided` constrains the output: `{"json": schema}` or `{"json_object": True}` (vLLM only).
        """
        ...

    async def abort(self, request_id: str) -> None: ...

    def add_lora(self, name: str, path: str) -> None: ...

    async def aclose(self) -> None: ...


def check_context_length(prompt_tokens: int, max_new_tokens: int | None, max_model_len: int) -> int:
    """Tokens the engine may generate; a clear error when the prompt and the request cannot fit."""
    room = max_model_len - prompt_tokens
    if room < 1 or (max_new_tokens is not None and max_new_tokens > room):
        wanted = max_new_tokens if max_new_tokens is not None else 1
        raise ContextLengthError(
            f"this request needs {prompt_tokens} prompt + {wanted} new tokens = {prompt_tokens + wanted}, "
            f"more than the model's context of {max_model_len} tokens",
            "shorten the input or lower max_new_tokens (or raise --max_model_len)",
        )
    return max_new_tokens if max_new_tokens is not None else room


def generate_all(
    engine: Engine,
    requests: Sequence[EngineRequest],
    on_result: Callable[[RequestResult], None] | None = None,
) -> list[RequestResult]:
    """Run requests as one batch; return final results in request order, calling on_result as each finishes."""
    final: dict[str, RequestResult] = {}
    results = finished_results(engine, requests)
    try:
        for result in results:
            final[result.request_id] = result
            if on_result is not None:
                on_result(result)
    finally:
        results.close()
    return [final[r.request_id] for r in requests]


def finished_results(engine: Engine, requests: Sequence[EngineRequest]) -> Generator[RequestResult, None, None]:
    """Each request's finished state, as it finishes. An engine with `final_results(requests)` (vLLM) skips the
    states in between; others are streamed and filtered. Closing the iterator early aborts what still runs."""
    final_results = getattr(engine, "final_results", None)
    stream = final_results(requests) if final_results is not None else engine.stream(requests)
    try:
        for result in stream:
            if result.finished:
                yield result
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
