"""Where the CLI's output goes. Results go to stdout (`result`), so `swiftcli infer ... > out.txt` and pipes work;
messages, progress and the loading spinner go to stderr; errors are rendered here as `Error: message` plus the
hint (always both), with the traceback under --debug; engine logs go to a file under $SWIFTCLI_HOME/logs unless -v.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from swiftcli.cli import state
from swiftcli.config.paths import swiftcli_home
from swiftcli.engines.logs import capture_engine_logs
from swiftcli.errors import EngineError, SwiftError

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)
_session: dict[str, Any] = {"debug": False, "engine_log": None}


def progress(label: str, *columns: str | ProgressColumn, transient: bool = True, hidden: bool | None = None
             ) -> Progress:
    """The CLI's one progress bar: `label`, a bar, then `columns`, on stderr; hidden with --quiet unless `hidden`
    says otherwise. Start and stop it (or use it as a context manager)."""
    return Progress(TextColumn(label), BarColumn(), *columns, console=stderr, transient=transient,
                    disable=state.quiet() if hidden is None else hidden, refresh_per_second=4)


@contextlib.contextmanager
def counting_bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A bar counting `total` items (done / total, time); yields advance(n)."""
    bar = progress(label, MofNCompleteColumn(), TimeElapsedColumn())
    task = bar.add_task(label, total=total)
    with bar:
        yield lambda n: bar.advance(task, n)


def set_debug(value: bool) -> None:
    _session["debug"] = value


def debug_enabled() -> bool:
    return bool(_session["debug"]) or os.environ.get("SWIFTCLI_DEBUG", "").lower() in ("1", "true", "yes")


def show_logs(name: str, level: int, propagate: bool = True) -> None:
    """The library's log lines under `name` on stderr, time-stamped as a server's are (the one place the CLI
    attaches a log handler). Call it after `engine_logs`, so that they reach the terminal, not the log file."""
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate


def result(text: str) -> None:
    """One result on stdout, flushed at once (a reader of the pipe sees each answer as it comes)."""
    print(text, flush=True)


def message(text: str, style: str | None = None) -> None:
    """A message for the person at the terminal (stderr); -q hides it."""
    if not state.quiet():
        stderr.print(Text(text, style=style or ""))


def warn(text: str) -> None:
    stderr.print(Text.assemble(("Warning: ", "yellow"), text))


_SNAKE_OPTION = re.compile(r"(?<![\w/.-])--([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\b")


def as_help_spells(text: str) -> str:
    """Options named in a message as help shows them: the library says `--max_model_len` (ms-swift's spelling,
    which works too), help and errors say `--max-model-len`."""
    return _SNAKE_OPTION.sub(lambda m: "--" + m.group(1).replace("_", "-"), text)


def render_error(exc: SwiftError) -> None:
    """`Error: message` and `Hint: ...`; for an engine that failed, where its log is and its last relevant lines."""
    if debug_enabled():
        stderr.print_exception(show_locals=False)
    stderr.print(Text.assemble(("Error: ", "bold red"), as_help_spells(exc.message)))
    if exc.hint:
        stderr.print(Text(f"Hint: {as_help_spells(exc.hint)}", style="dim"))
    log = _session["engine_log"]
    if isinstance(exc, EngineError) and log is not None and log.path is not None:
        for line in log.relevant_lines():
            stderr.print(Text(f"  {line}", style="dim"))
        stderr.print(Text(f"Engine log: {log.path}", style="dim"))


def report(exc: SwiftError) -> int:
    render_error(exc)
    return exc.exit_code


def usage_error(exc: Any) -> int:
    """A command line Click could not parse (an unknown option, a value of the wrong type): one `Error:` line and
    a hint, as for every other error, instead of Click's usage block."""
    stderr.print(Text.assemble(("Error: ", "bold red"), as_help_spells(exc.format_message())))
    ctx = getattr(exc, "ctx", None)
    where = getattr(exc, "help_path", None) or (ctx.command_path if ctx is not None else None)
    if where:
        stderr.print(Text(f"Hint: see '{where} --help'", style="dim"))
    return int(getattr(exc, "exit_code", 2))


def engine_logs(command: str) -> Any:
    """Send engine and library logs to $SWIFTCLI_HOME/logs/COMMAND-....log (stderr with -v); once per process."""
    if _session["engine_log"] is None:
        log = capture_engine_logs(swiftcli_home() / "logs", command, verbose=state.verbose())
        if log.terminal is not None:
            stderr.file = log.terminal  # our messages keep reaching the terminal while an engine loads
        _session["engine_log"] = log
    return _session["engine_log"]


class _Elapsed:
    def __init__(self, text: str) -> None:
        self.text = text
        self.started = time.monotonic()

    def __rich__(self) -> Text:
        return Text(f"{self.text}… {time.monotonic() - self.started:.0f} s")


@contextlib.contextmanager
def phase(text: str) -> Iterator[None]:
    """A spinner with the phase and elapsed seconds on a terminal ("Loading smollm2-135m-instruct… 12 s")."""
    log = _session["engine_log"]
    muted = log.muted() if log is not None else contextlib.nullcontext()
    if state.quiet() or not stderr.is_terminal:
        with muted:
            yield
        return
    with stderr.status(_Elapsed(text), spinner="dots"), muted:  # type: ignore[arg-type]
        yield
