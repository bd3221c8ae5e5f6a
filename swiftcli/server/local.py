"""The deploy app in this process, on a free port of 127.0.0.1, for tools that speak HTTP (lm-eval).

uvicorn runs on its own thread and event loop; the engine's requests run on that loop, as under `deploy`.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from swiftcli.errors import EngineError
from swiftcli.server.app import ServerSettings, create_app


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextmanager
def local_server(engine: Any, template: Any, settings: ServerSettings | None = None, timeout_s: float = 60.0
                 ) -> Iterator[str]:
    """Serve `engine` (an AsyncEngine) until the block ends; yields the base URL, `http://127.0.0.1:PORT/v1`.
    The engine is not closed: its owner closes it."""
    # lazy: keeps --help and start-up free of uvicorn
    import uvicorn

    app = create_app(settings or ServerSettings(), engine=engine, template=template)
    port = free_port()
    # log_config=None: uvicorn's own logging setup (dictConfig) would close every logging handler of this
    # process, among them absl's, which closes sys.stderr with it.
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, log_level="warning",
                            access_log=False, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    # uvicorn installs signal handlers only on the main thread; here Ctrl-C stays with the caller.
    thread = threading.Thread(target=server.run, name="swiftcli-local-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise EngineError(f"the local server on 127.0.0.1:{port} did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
