"""Answers from a running OpenAI-compatible server (`swiftcli deploy`, vLLM's server, ...) instead of a local engine.

A server has its model loaded already, so a one-shot question costs a request, not an engine start. What a local
run puts in the prompt (system, history, query) goes as chat messages and the server applies its chat template;
the sampling fields the caller sets go as request fields, and those it leaves unset stay the server's defaults
(for `swiftcli deploy`, its model's). Closing a stream closes its HTTP connection, which aborts the request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from swiftcli.apiclient import StreamTally, XRequestConfig, api_errors, connect_api, openai_client
from swiftcli.errors import InputError, UsageError
from swiftcli.generation.chat import Conversation

__all__ = ["RemoteAnswer", "RemoteModel", "RemoteProgress", "StreamTally", "request_config"]

# GenerationConfig field -> XRequestConfig field (the OpenAI request's name).
_REQUEST_FIELDS = {
    "max_new_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
    "repetition_penalty": "repetition_penalty", "seed": "seed", "stop": "stop", "ignore_eos": "ignore_eos",
    "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty",
}
DEFAULT_CONCURRENCY = 8


def request_config(sampling: Mapping[str, Any], stream: bool = False) -> Any:
    """The request fields for sampling settings given as GenerationConfig names; an unknown one is refused."""
    values = {k: v for k, v in sampling.items() if v is not None}
    if values.pop("do_sample", None) is False:
        values["temperature"] = 0.0
    unknown = sorted(set(values) - set(_REQUEST_FIELDS))
    if unknown:
        raise UsageError(f"cannot send {', '.join(unknown)} to a server", "leave it out with --api_url")
    if not values.get("stop"):
        values.pop("stop", None)
    return XRequestConfig(stream=stream, **{_REQUEST_FIELDS[k]: v for k, v in values.items()})


@dataclass
class RemoteAnswer:
    """One answer with its usage, as `swiftcli.generation.core.InferResult` has it."""

    query: str
    response: str
    prompt_tokens: int
    output_tokens: int
    finish_reason: str | None


@dataclass
class RemoteProgress:
    """A streamed answer so far; `output_tokens` counts chunks until the server's usage arrives at the end."""

    text: str
    output_tokens: int
    finished: bool = False
    finish_reason: str | None = None
    prompt_tokens: int = 0


class RemoteModel:
    """A model served at `base_url`: the same answers the local CLI paths ask an engine for."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, max_model_len: int | None = None,
                 timeout: float = 600.0) -> None:
        self.base_url = base_url
        self.model = model
        self.api_key = api_key
        self.max_model_len = max_model_len
        self.timeout = timeout
        # The sampling a chat with this model starts from, where the server lists one (swiftcli deploy does).
        self.chat_sampling: dict[str, float | int] = {}
        self._client: Any = None

    @classmethod
    def connect(cls, api_url: str, api_key: str | None = None, model: str | None = None) -> RemoteModel:
        """Check that the server answers (and knows `model`, else take the first it serves)."""
        target = connect_api(api_url, api_key, model)
        remote = cls(target.base_url, target.model, api_key, target.max_model_len)
        remote.chat_sampling = dict(target.chat_sampling)
        return remote

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = openai_client(self.base_url, self.api_key, timeout=self.timeout)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def answer(self, request: Mapping[str, Any], sampling: Mapping[str, Any]) -> RemoteAnswer:
        """One request `{"query", "history"?, "system"?}` answered whole."""
        with api_errors(self.base_url):
            response = self.client.chat.completions.create(
                model=self.model, messages=_messages(request), **request_config(sampling).to_kwargs(chat=True))
        return _answer_of(request, response)

    def stream(self, request: Mapping[str, Any], sampling: Mapping[str, Any]) -> Iterator[RemoteProgress]:
        """The answer as it grows; closing the iterator closes the connection (the server aborts the request)."""
        kwargs = request_config(sampling, stream=True).to_kwargs(chat=True)
        tally = StreamTally()
        with api_errors(self.base_url):
            stream = self.client.chat.completions.create(
                model=self.model, messages=_messages(request), stream_options={"include_usage": True}, **kwargs)
            try:
                for chunk in stream:
                    if tally.add(chunk):
                        yield RemoteProgress(tally.text, tally.chunks)
            finally:
                stream.close()
        yield RemoteProgress(tally.text, tally.output_tokens, True, tally.finish_reason, tally.prompt_tokens)

    def answer_all(self, requests: Sequence[Mapping[str, Any]], sampling: Mapping[str, Any],
                   concurrency: int = DEFAULT_CONCURRENCY,
                   on_answer: Callable[[int, RemoteAnswer], None] | None = None) -> list[RemoteAnswer]:
        """All requests with at most `concurrency` in flight; `on_answer(index, answer)` in completion order.

        The first failure stops the run (requests still in flight are cancelled) and is raised.
        """
        if concurrency < 1:
            raise UsageError("--max_concurrency must be at least 1")
        config = request_config(sampling).to_kwargs(chat=True)
        return asyncio.run(self._answer_all(list(requests), config, concurrency, on_answer))

    async def _answer_all(self, requests: list[Mapping[str, Any]], config: dict[str, Any], concurrency: int,
                          on_answer: Callable[[int, RemoteAnswer], None] | None) -> list[RemoteAnswer]:
        results: list[RemoteAnswer | None] = [None] * len(requests)
        semaphore = asyncio.Semaphore(concurrency)
        async with openai_client(self.base_url, self.api_key, timeout=self.timeout, asynchronous=True) as client:

            async def one(i: int) -> None:
                async with semaphore:
                    with api_errors(self.base_url):
                        response = await client.chat.completions.create(
                            model=self.model, messages=_messages(requests[i]), **config)
                answer = results[i] = _answer_of(requests[i], response)
                if on_answer is not None:
                    on_answer(i, answer)

            tasks = [asyncio.create_task(one(i)) for i in range(len(requests))]
            try:
                await asyncio.gather(*tasks)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        return [r for r in results if r is not None]


def _messages(request: Mapping[str, Any]) -> list[Any]:
    query = request.get("query")
    if not isinstance(query, str):
        raise InputError("each request needs a 'query' string")
    return Conversation.of(request.get("history"), request.get("system")).messages(query)


def _answer_of(request: Mapping[str, Any], response: Any) -> RemoteAnswer:
    choice = response.choices[0]
    usage = response.usage
    return RemoteAnswer(str(request["query"]), choice.message.content or "", usage.prompt_tokens if usage else 0,
                        usage.completion_tokens if usage else 0, choice.finish_reason)
