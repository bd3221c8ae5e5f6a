"""Lending engines to commands under test: a command closes what it loads, a lent engine stays up for the next."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

START_ENGINE = "swiftcli.engines.loader.start_engine"


class SharedEngine:
    """An engine lent to a command that closes what it loads: `close` leaves it running."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def close(self) -> None:
        pass


def lend(monkeypatch: pytest.MonkeyPatch, engine: Any) -> None:
    """Every `swiftcli.load` in the test gets `engine` instead of starting one."""
    monkeypatch.setattr(START_ENGINE, lambda *args, **kwargs: SharedEngine(engine))


def start_with(monkeypatch: pytest.MonkeyPatch, start: Callable[..., Any]) -> None:
    """Engines in the test are started by `start(spec, config, backend, asynchronous=False)`."""
    monkeypatch.setattr(START_ENGINE, start)


def start_and_keep(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Start real engines, kept open after the command so the test can use them: it closes the returned list."""
    from swiftcli.engines import create_engine

    started: list[Any] = []

    def start(spec: Any, config: Any, backend: str, asynchronous: bool = False) -> SharedEngine:
        engine = create_engine(spec, config, backend)
        started.append(engine)
        return SharedEngine(engine)

    start_with(monkeypatch, start)
    return started
