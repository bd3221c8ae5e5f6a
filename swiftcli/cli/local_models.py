"""`swiftcli models --local` (the models on this disk) and `swiftcli rm MODEL` (remove one)."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated

import typer

from swiftcli.cli import output
from swiftcli.cli.errors import handled
from swiftcli.errors import ModelNotFoundError, UsageError
from swiftcli.hub.download import format_bytes
from swiftcli.hub.local import find_local, local_models, remove


def show_local_models(as_json: bool) -> None:
    """Print downloaded and converted models: a table, or JSON (a list of objects) with `as_json`."""
    rows = local_models()
    if as_json:
        output.result(json.dumps([m.as_json() for m in rows], indent=2))
        return
    if not rows:
        output.message("No models on disk yet: `swiftcli download MODEL` fetches one.")
        return
    from rich.table import Table  # deferred: rich loads only when needed (a light start-up)

    table = Table(title="Models on disk")
    for column in ("id", "hub", "revision", "size", "partial", "last used", "path"):
        table.add_column(column, overflow="fold")
    for m in rows:
        table.add_row(m.id, m.hub, m.revision or "-", format_bytes(m.size),
                      format_bytes(m.partial) if m.partial else "-", _when(m.last_used), str(m.path))
    output.stdout.print(table)


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if stamp else "-"


@handled
def rm_command(
    model: Annotated[str, typer.Argument(help="Model id or folder, as `swiftcli models --local` lists it.",
                                         show_default=False)],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask first.")] = False,
) -> None:
    """Remove a downloaded or converted model from disk (for a hub model, every cached revision and any partial
    download). Asks first on a terminal; --yes skips the question.

    [b]Examples[/b]

      swiftcli rm Qwen/Qwen2.5-0.5B-Instruct

      swiftcli rm HuggingFaceTB/SmolLM2-135M-Instruct --yes
    """
    found = find_local(model)
    if not found:
        raise ModelNotFoundError(f"no model {model} on disk", "swiftcli models --local lists the models on disk")
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(f"removing {model} needs confirmation", "pass --yes to remove without a question")
        listing = "\n".join(f"  {m.id} ({m.hub}, {format_bytes(m.size + m.partial)}): {m.root}" for m in found)
        if not typer.confirm(f"Remove\n{listing}\n?", default=False, err=True):
            raise typer.Exit(1)
    for m in found:
        remove(m)
        output.message(f"Removed {m.id} ({m.hub}): {format_bytes(m.size + m.partial)} freed")

