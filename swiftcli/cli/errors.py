"""Known errors -> `Error: ...` + hint on stderr and an exit code; unknown ones keep their traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console

from swiftcli.errors import SwiftError

stderr = Console(stderr=True, highlight=False, soft_wrap=True)
_debug = False


def set_debug(value: bool) -> None:
    global _debug
    _debug = value


def debug_enabled() -> bool:
    return _debug or os.environ.get("SWIFTCLI_DEBUG", "").lower() in ("1", "true", "yes")


def report(exc: SwiftError) -> int:
    if debug_enabled():
        stderr.print_exception(show_locals=False)
    stderr.print(f"[bold red]Error:[/] {exc.message}", markup=True, highlight=False)
    if exc.hint:
        stderr.print(f"[dim]Hint: {exc.hint}[/]", markup=True, highlight=False)
    return exc.exit_code


def handled(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command body so that library errors become one-line messages and an exit code."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SwiftError as exc:
            raise typer.Exit(report(exc)) from None
        except KeyboardInterrupt:
            stderr.print("[yellow]Interrupted.[/]")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            sys.stderr.close()
            raise typer.Exit(0) from None

    return wrapper
