"""Answers for evaluation items: in one batch through a local engine, or concurrently from an OpenAI-compatible
server. A row that fails (bad data, too long, a server error) becomes a failed prediction; the run goes on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from swiftcli.config.spec import GenerationConfig
from swiftcli.errors import EngineError, SwiftError, UsageError
from swiftcli.eval.datasets import EvalItem

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
) -> Generated:
    """All runnable items go to the engine as one batch; on_progress(1) is called as each item is done."""
    from swiftcli.engines.base import check_context_length, generate_all
    from swiftcli.generation.core import encode_request

    progress = on_progress or (lambda _: None)
    predictions: list[Prediction | None] = [None] * len(items)
    requests = []
    positions: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.error is not None:
            predictions[i] = Prediction(error=item.error)
            progress(1)
            continue
        try:
            request = encode_request(template, item.request(), config)
            check_context_length(len(request.prompt_ids), config.max_new_tokens, engine.max_model_len)
        except SwiftError as exc:
            predictions[i] = Prediction(error=str(exc))
            progress(1)
            continue
        positions[request.request_id] = i
        requests.append(request)

    def finished(state: Any) -> None:
        from swiftcli.generation.thinking import split_thinking

        first = state.outputs[0]
        _, answer = split_thinking(template, first.text)  # scored without the thinking
        predictions[positions[state.request_id]] = Prediction(
            answer, state.prompt_tokens, state.output_tokens, first.finish_reason
        )
        progress(1)

    start = time.perf_counter()
    if requests:
        generate_all(engine, requests, finished)
    seconds = time.perf_counter() - start
    return Generated([p if p is not None else Prediction(error="no answer") for p in predictions], seconds)


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
        raise UsageError("--eval_concurrency must be at least 1")
    return asyncio.run(_generate_remote(target, items, config, concurrency, default_system, on_progress))


async def _generate_remote(
    target: RemoteTarget,
    items: Sequence[EvalItem],
    config: GenerationConfig,
    concurrency: int,
    default_system: str | None,
    on_progress: Progress | None,
) -> tuple[str, Generated]:
    import openai

    progress = on_progress or (lambda _: None)
    client = openai.AsyncOpenAI(
        base_url=target.url, api_key=target.token or "EMPTY", max_retries=0, timeout=target.timeout_s
    )
    async with client:
        model = await _pick_model(client, target)
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
                except openai.APIStatusError as exc:
                    return Prediction(error=f"server answered {exc.status_code}: {_api_message(exc)}")
                except openai.APIError as exc:
                    return Prediction(error=f"request failed: {exc.message}")
                finally:
                    progress(1)

        start = time.perf_counter()
        predictions = await asyncio.gather(*(answer(item) for item in items))
        return model, Generated(list(predictions), time.perf_counter() - start)


def resolve_remote_model(target: RemoteTarget) -> str:
    """The model to ask the server for (--eval_model, checked, else the first it lists)."""
    import openai

    async def pick() -> str:
        client = openai.AsyncOpenAI(base_url=target.url, api_key=target.token or "EMPTY", max_retries=0,
                                    timeout=target.timeout_s)
        async with client:
            return await _pick_model(client, target)

    return asyncio.run(pick())


async def _pick_model(client: Any, target: RemoteTarget) -> str:
    import openai

    try:
        models = [m.id async for m in client.models.list()]
    except openai.AuthenticationError:
        hint = "check --eval_token" if target.token else "pass the server's key with --eval_token"
        raise EngineError(f"{target.url} refused the request: it needs a valid API key", hint) from None
    except openai.PermissionDeniedError:
        raise EngineError(f"{target.url} refused the request (403)", "check --eval_token") from None
    except openai.NotFoundError:
        raise EngineError(
            f"{target.url}/models was not found", "--eval_url is the API's base URL, e.g. http://127.0.0.1:8000/v1"
        ) from None
    except openai.APIConnectionError:
        raise EngineError(
            f"cannot reach {target.url}", "start the server (e.g. `swiftcli deploy`) or check --eval_url"
        ) from None
    except openai.APIStatusError as exc:
        raise EngineError(f"{target.url} answered {exc.status_code}: {_api_message(exc)}") from None
    if target.model:
        if models and target.model not in models:
            raise UsageError(f"{target.url} does not serve model {target.model!r}", f"it serves: {', '.join(models)}")
        return target.model
    if not models:
        raise EngineError(f"{target.url} lists no models", "pass --eval_model NAME")
    return str(models[0])


def _api_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
    return str(getattr(exc, "message", exc))[:300]


def _request_params(config: GenerationConfig) -> dict[str, Any]:
    params: dict[str, Any] = {"max_tokens": config.max_new_tokens, "seed": config.seed}
    if config.stop:
        params["stop"] = list(config.stop)
    extra: dict[str, Any] = {}
    if config.greedy:
        params["temperature"] = 0.0
    else:
        params.update(temperature=config.temperature, top_p=config.top_p)
        if config.top_k > 0:
            extra["top_k"] = config.top_k
    if config.repetition_penalty != 1.0:
        extra["repetition_penalty"] = config.repetition_penalty
    if extra:
        params["extra_body"] = extra
    return {k: v for k, v in params.items() if v is not None}
