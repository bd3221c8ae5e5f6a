"""Start a real `swiftcli deploy` server in a subprocess on a free port and stop it by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

# The suite starts dozens of commands that each build one vLLM engine. On CPU swiftcli runs one worker inside the
# process that drives it (engines.parallel.worker_in_process), and a command a test starts does so too, as a user's
# does. vLLM's own layout (engine core and worker processes, each importing torch and vLLM anew: about 20 s more
# per start and stop on 2 cores) is what `one_process=False` asks for, as a user can with
# VLLM_ENABLE_V1_MULTIPROCESSING=1; data, tensor and pipeline parallel run in it whatever the variable says.
MULTIPROCESSING_VARIABLE = "VLLM_ENABLE_V1_MULTIPROCESSING"


def command_env(*, one_process: bool = True, **extra: str) -> dict[str, str]:
    """The environment for a `swiftcli` command a test starts: this one's, small KV caches, quiet vLLM logs, and
    swiftcli's own process layout unless `one_process=False`."""
    environ = {key: value for key, value in os.environ.items() if key != MULTIPROCESSING_VARIABLE}
    return {**environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
            "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING"),
            **({} if one_process else {MULTIPROCESSING_VARIABLE: "1"}), **extra}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running server: `base_url` is `http://127.0.0.1:PORT/v1`, `log` its combined stdout/stderr file."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    _log_file: object = field(repr=False, default=None)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM by PID, then SIGKILL if it has not exited within `timeout`; returns the exit code."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait(10)
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]
            self._log_file = None
        return self.process.returncode


def start_server(args: list[str], env: dict[str, str] | None = None, timeout: float = 300,
                 one_process: bool = True) -> Server:
    """Run `python -m swiftcli.cli deploy ARGS --port FREE` and wait until /health answers 200."""
    port = free_port()
    environ = command_env(one_process=one_process, **(env or {}))
    log = Path(tempfile.mkstemp(prefix=f"swiftcli-deploy-{port}-", suffix=".log")[1])
    log_file = log.open("wb")
    process = subprocess.Popen([sys.executable, "-m", "swiftcli.cli", "deploy", *args, "--port", str(port)],
                               stdout=log_file, stderr=subprocess.STDOUT, env=environ)
    server = Server(process, port, log, log_file)
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                server.stop()
                raise RuntimeError(f"the server exited with {process.returncode}:\n{server.output()[-3000:]}")
            try:
                if client.get(f"{server.root_url}/health").status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    server.stop()
    raise TimeoutError(f"the server was not ready within {timeout} s:\n{server.output()[-3000:]}")
