"""Answers from a running OpenAI-compatible server (`swiftcli deploy`, vLLM's server, ...) instead of a local engine.

A server has its model loaded already, so a one-shot question costs a request, not an engine start. What a local
run puts in the prompt (system, history, query) goes as chat messages and the server applies its chat template;
the sampling fields the caller sets go as request fields, and those it leaves unset stay the server's defaults
(for `swiftcli deploy`, its model's). Closing a stream closes its HTTP connection, which aborts the request.
The API asked (Chat Completions, Responses or Anthropic Messages) is `dialect` (see swiftcli.apidialect).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from swiftcli.apiclient import StreamTally, api_errors
from swiftcli.apidialect import connect_dialect, dialect_of, request_config
from swiftcli.errors import InputError, UsageError
from swiftcli.generation.chat import Conversation

__all__ = ["RemoteAnswer", "RemoteModel", "RemoteProgress", "StreamTally", "request_config"]

DEFAULT_CONCURRENCY = 8


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
                 timeout: float = 600.0, dialect: str = "chat") -> None:
        self.base_url = base_url
        self.model = model
        self.api_key = api_key
        self.max_model_len = max_model_len
        self.timeout = timeout
        self.dialect = dialect
        self.api = dialect_of(dialect)
        # The sampling a chat with this model starts from, where the server lists one (swiftcli deploy does).
        self.chat_sampling: dict[str, float | int] = {}
        self._client: Any = None

    @classmethod
    def connect(cls, api_url: str, api_key: str | None = None, model: str | None = None,
                dialect: str = "chat") -> RemoteModel:
        """Check that the server answers (and knows `model`, else take the first it serves)."""
        target = connect_dialect(api_url, api_key, model, dialect)
        remote = cls(target.base_url, target.model, api_key, target.max_model_len, dialect=dialect)
        remote.chat_sampling = dict(target.chat_sampling)
        return remote

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.api.client(self.base_url, self.api_key, self.timeout)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def request(self, request: Mapping[str, Any], sampling: Mapping[str, Any], stream: bool) -> dict[str, Any]:
        """The keyword arguments of the dialect's `create()` for one request."""
        return self.api.request(self.model, _messages(request), sampling, stream, self.max_model_len)

    def answer(self, request: Mapping[str, Any], sampling: Mapping[str, Any]) -> RemoteAnswer:
        """One request `{"query", "history"?, "system"?}` answered whole."""
        kwargs = self.request(request, sampling, False)
        with api_errors(self.base_url, sdk=self.api.sdk):
            response = self.api.create(self.client, kwargs)
        return _answer_of(request, self.api.reply(response))

    def stream(self, request: Mapping[str, Any], sampling: Mapping[str, Any]) -> Iterator[RemoteProgress]:
        """The answer as it grows; closing the iterator closes the connection (the server aborts the request)."""
        kwargs = self.request(request, sampling, True)
        tally = self.api.tally()
        with api_errors(self.base_url, sdk=self.api.sdk):
            stream = self.api.create(self.client, kwargs)
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
        request_config(sampling)  # an unknown setting fails before any request
        return asyncio.run(self._answer_all(list(requests), sampling, concurrency, on_answer))

    async def _answer_all(self, requests: list[Mapping[str, Any]], sampling: Mapping[str, Any], concurrency: int,
                          on_answer: Callable[[int, RemoteAnswer], None] | None) -> list[RemoteAnswer]:
        results: list[RemoteAnswer | None] = [None] * len(requests)
        semaphore = asyncio.Semaphore(concurrency)
        async with self.api.client(self.base_url, self.api_key, self.timeout, asynchronous=True) as client:

            async def one(i: int) -> None:
                async with semaphore:
                    kwargs = self.request(requests[i], sampling, False)
                    with api_errors(self.base_url, sdk=self.api.sdk):
                        response = await self.api.create(client, kwargs)
                answer = results[i] = _answer_of(requests[i], self.api.reply(response))
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


def _answer_of(request: Mapping[str, Any], reply: Any) -> RemoteAnswer:
    return RemoteAnswer(str(request["query"]), reply.text, reply.prompt_tokens, reply.output_tokens,
                        reply.finish_reason)
