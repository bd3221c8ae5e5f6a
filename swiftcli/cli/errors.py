"""Known errors -> `Error: ...` + hint on stderr and an exit code; unknown ones keep their traceback."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import typer

from swiftcli.cli.output import report, stderr
from swiftcli.errors import SwiftError
from swiftcli.hub.download import downloads_running


def handled(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command body so that library errors become one-line messages and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SwiftError as exc:
            raise typer.Exit(report(exc)) from None
        except KeyboardInterrupt:
            stderr.print("[yellow]Interrupted.[/]")
            _exit_now_if_downloading()
            raise typer.Exit(130) from None
        except BrokenPipeError:
            if not _stdout_is_gone():
                raise  # a socket or a child's pipe: a real error, not the reader of our output going away
            raise typer.Exit(1) from None  # as Rich's console does, and Python's documentation advises

    return wrapper


def _exit_now_if_downloading() -> None:
    """A hub client's worker threads would keep the process alive until their files finish: exit without them.
    The partial file they leave is removed by the next download of that model."""
    if downloads_running():
        stderr.print("[dim]The download stopped; running the command again completes it.[/]")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)


def _stdout_is_gone() -> bool:
    """True when stdout's reader has gone (`swiftcli infer ... | head`). Descriptor 1 then points at /dev/null, so
    the interpreter's last flush at exit cannot fail again; the streams themselves are left open."""
    try:
        sys.stdout.flush()
        return False
    except BrokenPipeError:
        pass
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no descriptor of its own (a test runner's capture)
        pass
    return True
