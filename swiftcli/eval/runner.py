"""Answers for evaluation items: in one batch through a local engine, or concurrently from an OpenAI-compatible
server. A row that fails (bad data, too long, a server error) becomes a failed prediction; the run goes on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from swiftcli.apiclient import connect_api, openai_client, request_error
from swiftcli.config.sampling import chat_sampling
from swiftcli.config.spec import GenerationConfig
from swiftcli.engines.base import check_context_length, generate_all
from swiftcli.errors import EngineError, SwiftError, UsageError
from swiftcli.eval.datasets import EvalItem
from swiftcli.generation.core import encode_request
from swiftcli.generation.thinking import split_thinking

Progress = Callable[[int], None]


@dataclass
class Prediction:
    """A model's answer to one item, or why there is none."""

    text: str | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str | None = None
    error: str | None = None
    # Multiple choice scored by loglikelihood: each option's log-probability, and whether it is the greedy one.
    loglikelihoods: list[float] | None = None
    greedy: list[bool] | None = None


@dataclass
class Generated:
    predictions: list[Prediction]
    seconds: float


def generate_local(
    engine: Any,
    template: Any,
    items: Sequence[EvalItem],
    config: GenerationConfig,
    on_progress: Progress | None = None,
    adapter: str | None = None,
) -> Generated:
    """All runnable items go to the engine as one batch (on `adapter`, a LoRA the engine holds, when given);
    on_progress(1) is called as each item is done."""
    return generate_adapters(engine, template, items, config, [adapter], on_progress)[0]


def generate_adapters(
    engine: Any,
    template: Any,
    items: Sequence[EvalItem],
    config: GenerationConfig,
    adapters: Sequence[str | None],
    on_progress: Progress | None = None,
) -> list[Generated]:
    """Every item once per adapter, all in one batch (item-major, so the engine mixes adapters in each step);
    one Generated per adapter, in order. The seconds are the batch's, shared by all. Answers are scored without
    their thinking part."""
    progress = on_progress or (lambda _: None)
    predictions: list[list[Prediction | None]] = [[None] * len(items) for _ in adapters]
    requests, where = _encode_all(engine, template, items, config, adapters, predictions, progress)

    def finished(state: Any) -> None:
        a, i = where[state.request_id]
        first = state.outputs[0]
        _, answer = split_thinking(template, first.text)
        predictions[a][i] = Prediction(answer, state.prompt_tokens, state.output_tokens, first.finish_reason)
        progress(1)

    start = time.perf_counter()
    if requests:
        generate_all(engine, requests, finished)
    seconds = time.perf_counter() - start
    return [Generated([p if p is not None else Prediction(error="no answer") for p in row], seconds)
            for row in predictions]


def _encode_all(engine: Any, template: Any, items: Sequence[EvalItem], config: GenerationConfig,
                adapters: Sequence[str | None], predictions: list[list[Prediction | None]], progress: Progress
                ) -> tuple[list[Any], dict[str, tuple[int, int]]]:
    """The engine requests (and where each answer goes); a row that cannot be encoded fails on its own."""
    requests = []
    where: dict[str, tuple[int, int]] = {}
    for i, item in enumerate(items):
        for a, adapter in enumerate(adapters):
            if item.error is not None:
                predictions[a][i] = Prediction(error=item.error)
                progress(1)
                continue
            try:
                request = encode_request(template, item.request(), config, adapter)
                check_context_length(len(request.prompt_ids), config.max_new_tokens, engine.max_model_len)
            except SwiftError as exc:
                predictions[a][i] = Prediction(error=str(exc))
                progress(1)
                continue
            where[request.request_id] = (a, i)
            requests.append(request)
    return requests, where


@dataclass
class RemoteTarget:
    """An OpenAI-compatible server: base URL (ending in /v1), API key, and the model name to ask for."""

    url: str
    token: str | None = None
    model: str | None = None
    timeout_s: float = 600.0


def generate_remote(
    target: RemoteTarget,
    items: Sequence[EvalItem],
    config: GenerationConfig,
    concurrency: int = 8,
    default_system: str | None = None,
    on_progress: Progress | None = None,
) -> tuple[str, Generated]:
    """(the model name the server answered with, predictions); raises EngineError when the server cannot be used."""
    if concurrency < 1:
        raise UsageError("--eval-concurrency must be at least 1")
    return asyncio.run(_generate_remote(target, items, config, concurrency, default_system, on_progress))


async def _generate_remote(
    target: RemoteTarget,
    items: Sequence[EvalItem],
    config: GenerationConfig,
    concurrency: int,
    default_system: str | None,
    on_progress: Progress | None,
) -> tuple[str, Generated]:
    import openai  # deferred: openai loads only when needed (a light start-up)

    progress = on_progress or (lambda _: None)
    model: str = target.model if target.model else await asyncio.to_thread(resolve_remote_model, target)
    async with openai_client(target.url, target.token, timeout=target.timeout_s, asynchronous=True) as client:
        semaphore = asyncio.Semaphore(concurrency)
        params = _request_params(config)

        async def answer(item: EvalItem) -> Prediction:
            if item.error is not None:
                progress(1)
                return Prediction(error=item.error)
            async with semaphore:
                try:
                    messages: Any = item.messages(default_system)
                    reply = await client.chat.completions.create(model=model, messages=messages, **params)
                    choice = reply.choices[0]
                    usage = reply.usage
                    return Prediction(
                        choice.message.content or "",
                        usage.prompt_tokens if usage else 0,
                        usage.completion_tokens if usage else 0,
                        choice.finish_reason,
                    )
                except openai.APIError as exc:
                    return Prediction(error=request_error(exc))
                finally:
                    progress(1)

        start = time.perf_counter()
        predictions = await asyncio.gather(*(answer(item) for item in items))
        return model, Generated(list(predictions), time.perf_counter() - start)


def resolve_remote_model(target: RemoteTarget) -> str:
    """The model to ask the server for (--eval-model, checked, else the first it lists)."""
    found = connect_api(target.url, target.token, target.model, timeout=target.timeout_s, url_option="--api-url",
                        key_option="--api-key", model_option="--eval-model")
    if found.base_url != target.url.rstrip("/"):  # the requests go to target.url as given
        raise EngineError(f"{target.url}/models was not found", f"--api-url is the API's base URL: {found.base_url}")
    return found.model


def _request_params(config: GenerationConfig) -> dict[str, Any]:
    # The sampling fields are config.sampling's one mapping (greedy sends temperature 0 alone); fields the openai
    # client does not name go in extra_body.
    params: dict[str, Any] = {**chat_sampling(config), "max_tokens": config.max_new_tokens, "seed": config.seed}
    if config.stop:
        params["stop"] = list(config.stop)
    extra = {name: params.pop(name) for name in ("top_k", "repetition_penalty") if name in params}
    if extra:
        params["extra_body"] = extra
    return {k: v for k, v in params.items() if v is not None}
