"""`swiftcli logs FILE`: the requests a `deploy --log_requests FILE` served, listed or exported as training rows."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from swiftcli.cli import output
from swiftcli.cli.errors import handled
from swiftcli.cli.options import with_options
from swiftcli.config.commands import OutputOptions
from swiftcli.errors import UsageError
from swiftcli.export.request_rows import (
    EXPORTS,
    LogFilter,
    LoggedRequest,
    dpo_rows,
    load_requests,
    select,
    sft_rows,
    write_rows,
)


@with_options(out=OutputOptions)
@handled
def logs_command(
    file: Annotated[str, typer.Argument(help="The request log: FILE.jsonl, FILE.sqlite or FILE.db (its rotated "
                                        "files FILE.1.jsonl ... are read too).", show_default=False)],
    model: Annotated[str | None, typer.Option("--model", help="Only requests for this model id.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only requests since this time: ISO "
                                              "(2026-12-05T04:00, UTC unless given) or ago (30m, 2h, 7d).")] = None,
    rated: Annotated[bool, typer.Option("--rated", help="Only requests that clients rated.")] = False,
    limit: Annotated[int | None, typer.Option("--limit", help="At most the newest N requests.")] = None,
    export: Annotated[str | None, typer.Option("--export", help="Write ms-swift training rows instead: sft "
                                               "(well-rated or corrected answers) or dpo (preferred vs served).",
                                               metavar="sft|dpo")] = None,
    output_file: Annotated[str | None, typer.Option("--output-file", help="Where --export writes its JSON "
                                                    "lines (replaced whole, never half-written).")] = None,
    include_unrated: Annotated[bool, typer.Option("--include-unrated", help="--export sft: also the finished "
                                                  "requests nobody rated.")] = False,
    *,
    out: OutputOptions,
) -> None:
    """List the requests a server logged (deploy --log-requests FILE), with their ratings, or export them as
    ms-swift training rows: sft takes each finished chat request rated above 0 or given a preferred answer;
    dpo pairs a preferred answer (chosen) with the one served (rejected_response).

    [b]Examples[/b]

      swiftcli logs requests.jsonl --since 2h --limit 20

      swiftcli logs requests.jsonl --rated --output json

      swiftcli logs requests.jsonl --export dpo --output-file dpo.jsonl
    """
    wanted = LogFilter(model=model, since=since, rated=rated, limit=limit)
    check_export(export, output_file, include_unrated)
    requests = select(load_requests(file), wanted)
    if export is not None:
        assert output_file is not None
        rows = sft_rows(requests, include_unrated) if export == "sft" else dpo_rows(requests)
        path = write_rows(rows, output_file)
        output.message(f"Wrote {len(rows)} {export} row(s) from {len(requests)} request(s) to {path}")
        return
    if out.json:
        output.result(json.dumps([r.as_dict() for r in requests], indent=2, ensure_ascii=False))
        return
    output.stdout.print(request_table(requests))


def check_export(export: str | None, output_file: str | None, include_unrated: bool) -> None:
    if export is not None and export not in EXPORTS:
        raise UsageError(f"--export must be sft or dpo, not {export!r}")
    if export is not None and output_file is None:
        raise UsageError("--export needs --output-file", "e.g. --output-file sft.jsonl")
    if export is None and output_file is not None:
        raise UsageError("--output-file goes with --export sft|dpo")
    if include_unrated and export != "sft":
        raise UsageError("--include-unrated goes with --export sft")


def request_table(requests: list[LoggedRequest]) -> Table:
    table = Table(title=f"{len(requests)} request(s)")
    # The model and latency are in --output json; the table keeps to what fits a terminal.
    for column in ("time", "id", "route", "status", "tokens", "rating", "question", "answer"):
        wraps = column in ("id", "question", "answer")
        table.add_column(column, overflow="fold", no_wrap=not wraps, min_width=10 if wraps else None)
    for request in requests:
        record = request.record
        usage = record.get("usage") or {}
        rating = "" if request.score is None else f"{request.score:g}"
        if request.preferred:
            rating += " +pref"
        tokens = f"{usage.get('prompt_tokens', '?')}+{usage.get('completion_tokens', '?')}"
        table.add_row(str(record.get("time", ""))[5:19].replace("T", " "), str(record.get("id")),
                      str(record.get("route")), str(record.get("status")), tokens, rating.strip(),
                      _short(_question(record)), _short((record.get("answer") or {}).get("text") or ""))
    return table


def _question(record: dict[str, object]) -> str:
    messages = record.get("messages")
    if isinstance(messages, list):
        users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        return str(users[-1] or "") if users else ""
    prompt = record.get("prompt")
    return prompt if isinstance(prompt, str) else json.dumps(prompt)


def _short(text: str, width: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"
