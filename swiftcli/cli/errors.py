"""Known errors -> `Error: ...` + hint on stderr and an exit code; unknown ones keep their traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import typer

from swiftcli.cli.output import report, stderr
from swiftcli.errors import SwiftError


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
            raise typer.Exit(130) from None
        except BrokenPipeError:
            sys.stderr.close()
            raise typer.Exit(0) from None

    return wrapper
