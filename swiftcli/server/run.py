"""Run the app under uvicorn with a draining shutdown: on SIGTERM/SIGINT /health turns 503, new /v1 requests get
503, requests in flight finish (up to `shutdown_timeout` seconds), then the process exits 0."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from swiftcli.config.commands import ListenConfig
from swiftcli.server.app import Loader, ServerSettings, ServerState, create_app

logger = logging.getLogger("swiftcli.server")
DEAD_ENGINE_GRACE_S = 1.0


@dataclass(frozen=True)
class ListenOptions(ListenConfig):
    """Where to listen (ListenConfig: its fields and defaults are deploy's options) and uvicorn's log level."""

    log_level: str = "warning"


def _server_class() -> Any:
    import uvicorn  # deferred: uvicorn loads only when needed (a light start-up)

    class DrainingServer(uvicorn.Server):  # type: ignore[misc]
        def __init__(self, config: Any, state: ServerState, shutdown_timeout: float,
                     announce: Callable[[str], None]) -> None:
            super().__init__(config)
            self.state = state
            self.announce = announce
            self.shutdown_timeout = shutdown_timeout
            self.drain_deadline: float | None = None
            self.dead_deadline: float | None = None
            self.announced = False

        def handle_exit(self, sig: int, frame: Any) -> None:
            # A second signal quits at once; the first one drains. The signal is not re-raised afterwards
            # (uvicorn's default), so a drained server exits 0.
            if self.drain_deadline is not None:
                self.should_exit = True
                self.force_exit = True
                return
            self.state.draining = True
            self.drain_deadline = time.monotonic() + self.shutdown_timeout
            logger.warning("draining: %d request(s) in flight, waiting up to %.0f s", self.state.in_flight,
                           self.shutdown_timeout)

        async def on_tick(self, counter: int) -> bool:
            state = self.state
            if state.ready and not self.announced:
                self.announced = True
                scheme = "https" if self.config.ssl_keyfile else "http"
                self.announce(f"Serving {state.model_id} on {scheme}://{self.config.host}:{self.config.port}/v1 "
                              f"(max_concurrent_requests={state.settings.max_concurrent_requests})")
            if state.load_error is not None:
                self.should_exit = True
            self._exit_if_engine_died()
            if self.drain_deadline is not None and not self.should_exit:
                if state.in_flight == 0 or time.monotonic() >= self.drain_deadline:
                    self.should_exit = True
            return bool(await super().on_tick(counter))

        def _exit_if_engine_died(self) -> None:
            # A dead engine core fails every request: answer 503 for a moment (so streams in flight get
            # their error event and probes see it), then exit non-zero so a supervisor restarts the server.
            if self.dead_deadline is None and self.state.engine_dead:
                logger.error("the engine has stopped; exiting so that the server can be restarted")
                self.dead_deadline = time.monotonic() + DEAD_ENGINE_GRACE_S
            if self.dead_deadline is not None and time.monotonic() >= self.dead_deadline:
                self.should_exit = True

    return DrainingServer


def serve(settings: ServerSettings, loader: Loader, listen: ListenOptions,
          announce: Callable[[str], None] = logger.info) -> int:
    """Serve until drained; returns the process exit code (1 when the model could not be loaded). `announce`
    says once where the server answers, when the model is ready (deploy: the command's message line)."""
    import uvicorn  # deferred: uvicorn loads only when needed (a light start-up)

    app = create_app(settings, loader=loader)
    state: ServerState = app.state.server
    config = uvicorn.Config(
        app, host=listen.host, port=listen.port, ssl_keyfile=listen.ssl_keyfile, ssl_certfile=listen.ssl_certfile,
        log_level=listen.log_level, access_log=listen.log_level == "info", timeout_graceful_shutdown=2,
        timeout_keep_alive=5,
    )
    server = _server_class()(config, state, listen.shutdown_timeout, announce)
    server.run()
    if state.load_error is not None or server.dead_deadline is not None:
        return 1
    return 0 if server.started or state.draining else 1
