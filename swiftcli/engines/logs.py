"""Engine chatter into a log file: vLLM's loggers in this process and in its engine-core and worker processes,
native warnings (NUMA, oneDNN), Python warnings, and the loading bars of transformers and tqdm.

Native code and child processes write to file descriptor 2, so `capture_engine_logs` points descriptor 2 at the log
file and gives `sys.stderr` a descriptor of its own that still reaches the terminal: swiftcli's messages, progress
and tracebacks of real bugs stay visible, everything else goes to the file. Call it before the engine starts.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

KEEP_LOGS = 20
_RELEVANT = re.compile(r"error|exception|traceback|raise|fail|killed|out of memory|not supported", re.IGNORECASE)


@dataclass(frozen=True)
class EngineLog:
    """Where engine logs went; `path` is None when they stay on stderr (verbose). `terminal` is the stream that
    still reaches the user's stderr."""

    path: Path | None
    terminal: TextIO | None = None

    @contextlib.contextmanager
    def muted(self) -> Iterator[None]:
        """While an engine loads, Python-level writes to sys.stderr and sys.stdout (libraries that print at
        import, such as gptqmodel's banner on stdout; loading bars, warnings) go to the log file; afterwards both
        are what they were, so a bug's traceback stays visible. Verbose: stdout's share goes to stderr, since
        stdout is for results."""
        if self.path is None:
            with contextlib.redirect_stdout(sys.stderr):
                yield
            return
        saved = sys.stderr
        with open(self.path, "a", buffering=1, encoding="utf-8", errors="backslashreplace") as log:
            sys.stderr = log
            try:
                with contextlib.redirect_stdout(log):
                    yield
            finally:
                sys.stderr = saved

    def relevant_lines(self, limit: int = 6) -> list[str]:
        """The last lines that look like the reason an engine failed."""
        if self.path is None or not self.path.is_file():
            return []
        lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        return [line.strip()[:300] for line in lines if _RELEVANT.search(line)][-limit:]


def log_level() -> str | None:
    """SWIFTCLI_LOG_LEVEL, when set: logs then go to stderr at that level, as with --verbose."""
    value = os.environ.get("SWIFTCLI_LOG_LEVEL", "").strip().upper()
    return value or None


def engine_log_env(level: str) -> dict[str, str]:
    return {
        "VLLM_LOGGING_LEVEL": level,
        "TRANSFORMERS_VERBOSITY": level.lower(),
        "TOKENIZERS_PARALLELISM": "false",
    }


def capture_engine_logs(log_dir: Path, name: str, verbose: bool = False) -> EngineLog:
    """Send engine logs to a new file under `log_dir` (or, verbose, leave them on stderr at INFO)."""
    level = log_level()
    if verbose or level:
        for key, value in engine_log_env(level or "INFO").items():
            os.environ.setdefault(key, value)
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
        _engine_notes_to(logging.StreamHandler())
        return EngineLog(None)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "warning")  # its INFO dumps every config it reads
    for key, value in engine_log_env("INFO").items():
        os.environ.setdefault(key, value)
    os.environ["TQDM_DISABLE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    terminal = _redirect_fd2(path)
    if terminal is None:
        return EngineLog(None)
    # vLLM resolves this when it configures logging: the original stderr object, on descriptor 2, now the file.
    os.environ["VLLM_LOGGING_STREAM"] = "ext://sys.__stderr__"
    _python_logs_to(path)
    _prune(log_dir)
    return EngineLog(path, terminal)


def _redirect_fd2(path: Path) -> TextIO | None:
    """Descriptor 2 -> the file; sys.stderr -> a copy of the old descriptor 2, returned. None where stderr was
    replaced (a test runner's capture): nothing is redirected then."""
    if sys.stderr is not sys.__stderr__:
        return None
    try:
        sys.stderr.flush()  # type: ignore[union-attr]
        terminal_fd = os.dup(2)
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    terminal = open(terminal_fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
    sys.stderr = terminal
    return terminal


def _engine_notes_to(handler: logging.Handler) -> None:
    """swiftcli's own engine notes (the scheduler budgets in force, say) at INFO, beside vLLM's."""
    log = logging.getLogger("swiftcli.engines")
    if not log.handlers:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False  # deploy's own "swiftcli" handler would print it twice


def _python_logs_to(path: Path) -> None:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    _engine_notes_to(handler)
    logging.captureWarnings(True)
    for name in ("py.warnings", "transformers", "torch", "peft", "huggingface_hub", "gptqmodel", "accelerate"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.propagate = False
    warnings.simplefilter("default")


def _prune(log_dir: Path) -> None:
    logs = sorted(log_dir.glob("*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in logs[KEEP_LOGS:]:
        try:
            old.unlink()
        except OSError:
            pass
