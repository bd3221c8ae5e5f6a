"""Start vLLM's engine core process in a session of its own, so that signals meant for the server skip it.

vLLM's engine core installs SIGINT/SIGTERM handlers that stop it. A terminal's Ctrl-C goes to the whole
foreground process group, and `kill -TERM -PGID` (or a supervisor that signals the group) does the same:
without this, the engine dies while the server drains, and every request in flight fails. In its own
session the core receives only what is sent to it, which is what the server does when it shuts the engine
down after draining.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

logger = logging.getLogger("swiftcli.engines")

_ORIGINAL = "_swiftcli_original_run_engine_core"


def run_engine_core_detached(*args: Any, **kwargs: Any) -> None:
    """The engine core's process entry point, in a new session (module level: spawn pickles it by name)."""
    # lazy: keeps --help and start-up free of torch, vLLM, transformers, the hub clients, FastAPI
    from vllm.v1.engine.core import EngineCoreProc

    try:
        os.setsid()
    except OSError:  # already a session leader: nothing to leave
        pass
    _stop_with_parent(os.getppid())
    # Under fork the class still holds this function; under spawn it holds vLLM's own.
    original = getattr(EngineCoreProc, _ORIGINAL, None) or EngineCoreProc.run_engine_core
    original(*args, **kwargs)


def _stop_with_parent(parent: int) -> None:
    """Out of the server's session, nothing else would stop the engine core if the server were killed -9:
    once the parent is gone, send ourselves the SIGTERM that vLLM's handler turns into a clean exit."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="swiftcli-parent-watch", daemon=True).start()


@contextmanager
def engine_core_detached() -> Iterator[None]:
    """While vLLM starts its engine core process, make that process begin with `os.setsid()`."""
    try:
        # lazy: keeps --help free of vLLM, whose internals may move
        from vllm.v1.engine.core import EngineCoreProc
    except ImportError:  # another vLLM layout: start as vLLM does
        yield
        return
    original = EngineCoreProc.__dict__.get("run_engine_core")
    if original is None or getattr(EngineCoreProc, _ORIGINAL, None) is not None:
        yield
        return
    setattr(EngineCoreProc, _ORIGINAL, original.__func__ if isinstance(original, staticmethod) else original)
    EngineCoreProc.run_engine_core = staticmethod(run_engine_core_detached)  # type: ignore[method-assign]
    try:
        yield
    finally:
        EngineCoreProc.run_engine_core = original  # type: ignore[method-assign]
        delattr(EngineCoreProc, _ORIGINAL)
