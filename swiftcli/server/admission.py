"""Admission: a concurrency slot per request (429 beyond the limit) with its metrics, and cancellation when the
client goes away."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from swiftcli.engines.base import RequestResult
from swiftcli.server.errors import APIError
from swiftcli.server.metrics import Metrics

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
