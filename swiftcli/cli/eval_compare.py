"""`swiftcli eval compare RUN_A RUN_B`: two runs side by side, metric deltas and the samples that flipped."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from swiftcli.cli.errors import handled
from swiftcli.cli.output import result, stderr, stdout
from swiftcli.errors import InputError, UsageError
from swiftcli.eval.compare import compare_runs, render_html
from swiftcli.eval.report import load_run

COMPARE_EXAMPLES = """

[b]Examples[/b]

  swiftcli eval compare eval_outputs/base eval_outputs/lora

  swiftcli eval compare runs/a runs/b --html compare.html
"""


@handled
def compare_command(
    run_a: Annotated[Path, typer.Argument(help="A run directory (or its summary.json).")],
    run_b: Annotated[Path, typer.Argument(help="The run to compare it with.")],
    html: Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML report here.")] = None,
    output_format: Annotated[str, typer.Option(
        "--output", "-o", metavar="text|json", show_default=True,
        help="text: two tables; json: the metrics, deltas and flips on stdout.")] = "text",
) -> None:
    """Compare two runs: every metric side by side with its delta, and samples that flipped right/wrong."""
    if output_format not in ("text", "json"):
        raise UsageError(f"--output must be text or json, not {output_format!r}")
    comparison = compare_runs(load_run(run_a), load_run(run_b))
    if output_format == "json":
        result(json.dumps(comparison.to_json(), ensure_ascii=False, indent=2))
    else:
        stdout.print(_metrics_table(comparison))
        stdout.print(_flips_table(comparison))
    for warning in comparison.warnings:
        stderr.print(f"[yellow]Warning:[/] {warning}", highlight=False)
    if html is not None:
        _write_text(html, render_html(comparison))
        stderr.print(f"[dim]wrote {html}[/]", highlight=False)


def _metrics_table(comparison: Any) -> Any:
    from rich.table import Table  # deferred: rich loads only when needed (a light start-up)

    label_a, label_b = comparison.a.label, comparison.b.label
    table = Table(title="metrics", title_justify="left")
    for column in ("dataset", "metric", f"A: {label_a}", f"B: {label_b}", "B - A"):
        table.add_column(column, justify="left" if column in ("dataset", "metric") else "right")
    for row in comparison.metrics:
        delta = row.delta
        shown = round(delta or 0.0, 2)
        style = "green" if shown > 0 else "red" if shown < 0 else ""
        signed = "-" if delta is None else f"[{style}]{_signed(delta)}[/]" if style else _signed(delta)
        table.add_row(row.dataset, row.metric, _num(row.a), _num(row.b), signed)
    return table


def _flips_table(comparison: Any) -> Any:
    from rich.table import Table  # deferred: rich loads only when needed (a light start-up)

    table = Table(title="samples", title_justify="left")
    for column in ("dataset", "matched", "wrong->right", "right->wrong", "both right", "both wrong"):
        table.add_column(column, justify="left" if column == "dataset" else "right")
    for f in comparison.flips:
        table.add_row(f.dataset, str(f.matched), str(f.wrong_to_right), str(f.right_to_wrong), str(f.both_right),
                      str(f.both_wrong))
    return table


def _signed(delta: float) -> str:
    # round() then + 0.0 turns -0.0 into 0.0, so an unchanged metric never shows as "-0.00".
    return f"{round(delta, 2) + 0.0:+.2f}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _write_text(path: Path, text: str) -> None:
    if path.is_dir():
        raise UsageError(f"--html {path} is a directory", "give a file name, e.g. report.html")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise InputError(f"--html {path} cannot be written: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


compare_command.__doc__ = (compare_command.__doc__ or "") + COMPARE_EXAMPLES
