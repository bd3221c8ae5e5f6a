"""`swiftcli eval`: score a model on dataset files (local engine or --api-url); `swiftcli eval compare A B`.

The command parses and dispatches; the work lives in swiftcli.eval (settings, run, sweep)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from swiftcli.cli.common import load
from swiftcli.cli.errors import handled
from swiftcli.cli.eval_compare import compare_command
from swiftcli.cli.eval_sweep import run_sweep_command
from swiftcli.cli.options import ALIASES, with_options
from swiftcli.cli.output import counting_bar, message, result, stdout
from swiftcli.cli.remote import ApiKeyOption, ApiUrlOption
from swiftcli.config.options import ModelOptions
from swiftcli.config.spec import EngineConfig, GenerationOverrides
from swiftcli.engines import default_backend
from swiftcli.engines.threaded import ThreadedAsyncEngine
from swiftcli.errors import UsageError
from swiftcli.eval.checkpoints import is_sweep
from swiftcli.eval.engine_support import check_can_score
from swiftcli.eval.report import default_output_dir
from swiftcli.eval.run import run_local, run_remote
from swiftcli.eval.settings import EvalSettings, check_before_load
from swiftcli.server.app import ServerSettings
from swiftcli.server.local import local_server

EXAMPLES = """

[b]Examples[/b]

  swiftcli eval --eval-dataset qa.jsonl --eval-dataset mmlu_dev.csv --eval-limit 100

  swiftcli eval --api-url http://127.0.0.1:8000/v1 --eval-dataset qa.jsonl --output json

  swiftcli eval --ckpt-dir 'output/v0-xxx/checkpoint-*' --eval-dataset qa.jsonl --eval-output-dir sweep1
"""

# The names eval's server options had before every client command shared --api-url and --api-key.
for _old, _new in (("eval-url", "api-url"), ("eval-token", "api-key")):
    if _new not in ALIASES.setdefault(_old, []):
        ALIASES[_old].append(_new)
OUTPUT_FORMATS = ("text", "json")

OutputOption = Annotated[str, typer.Option(
    "--output", "-o", metavar="text|json", show_default=True,
    help="text: a table of metrics; json: summary.json (a sweep: sweep.json) on stdout.")]

eval_app = typer.Typer(
    name="eval",
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@eval_app.callback(invoke_without_command=True)
@with_options(settings=EvalSettings, model=ModelOptions, engine=EngineConfig, gen=GenerationOverrides)
@handled
def eval_command(
    ctx: typer.Context,
    api_url: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = "text",
    *,
    settings: EvalSettings,
    model: ModelOptions,
    engine: EngineConfig,
    gen: GenerationOverrides,
) -> None:
    """Score a model on dataset files: per-sample jsonl, summary.json and a table of metrics."""
    if ctx.invoked_subcommand is not None:
        return

    _check_options(api_url, output_format, model)
    seed = gen.seed if gen.seed is not None else 0
    output_dir = settings.output_dir or default_output_dir()
    if is_sweep(model.ckpt_dir):  # a glob, a list or a run folder: every checkpoint, resumable

        return run_sweep_command(settings, output_dir, seed, model, engine, gen, output_format)
    if api_url:
        summary = eval_remote(settings, output_dir, seed, api_url.rstrip("/"), api_key, model, gen)
    else:
        summary = eval_local(settings, output_dir, seed, model, engine, gen)
    print_summary(summary, output_dir, output_format)


def _check_options(api_url: str | None, output_format: str, model: ModelOptions) -> None:
    if output_format not in OUTPUT_FORMATS:
        raise UsageError(f"--output must be text or json, not {output_format!r}")
    if api_url and (model.model_type or model.model_id_or_path or model.ckpt_dir):
        raise UsageError("--api-url evaluates a running server; it takes no --model-type, --model or --ckpt-dir",
                         "use --eval-model to pick a model the server serves")


def eval_local(settings: EvalSettings, output_dir: Path, seed: int, model: ModelOptions, engine: EngineConfig,
               gen: GenerationOverrides) -> dict[str, Any]:
    """Check what needs no model, then load it and evaluate (swiftcli.eval.run.run_local)."""
    plan = settings.plan(check_before_load(settings, output_dir, seed))
    check_can_score(model.infer_backend or default_backend(), plan)
    return run_local(settings, plan, output_dir, seed, gen.given(), lambda: load("eval", model, engine, gen),
                     bar=progress_bar, serve=_serve)


def eval_remote(settings: EvalSettings, output_dir: Path, seed: int, url: str, key: str | None,
                model: ModelOptions, gen: GenerationOverrides) -> dict[str, Any]:
    """Check what needs no server, then evaluate the server's model (swiftcli.eval.run.run_remote)."""
    plan = settings.plan(check_before_load(settings, output_dir, seed))
    return run_remote(settings, plan, output_dir, seed, gen.given(), url, key, model.system, bar=progress_bar)


@contextmanager
def _serve(loaded: Any) -> Iterator[str]:
    """The loaded engine behind a server on 127.0.0.1 for lm-eval's tasks (the server lives above eval in the
    layers, so the command joins the two). The engine answers one request at a time here and stays open."""
    settings = ServerSettings(served_model_name=loaded.spec.name)
    with local_server(ThreadedAsyncEngine(loaded.engine), loaded.template, settings) as url:
        yield url


def progress_bar(total: int) -> contextlib.AbstractContextManager[Callable[[int], None]]:
    """eval's bar: rows answered out of `total`."""
    return counting_bar("eval", total)


def print_summary(summary: dict[str, Any], output_dir: Path, output_format: str = "text") -> None:
    """The run's metrics on stdout (a table, or summary.json with --output json); where it went on stderr."""
    from rich.table import Table  # deferred: rich loads only when needed (a light start-up)

    if output_format == "json":
        result(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        table = Table(title=f"swiftcli eval: {summary['model'].get('name')}", title_justify="left")
        for column in ("dataset", "kind", "metric", "score", "ok", "failed"):
            table.add_column(column, justify="right" if column in ("score", "ok", "failed") else "left")
        for d in summary["datasets"]:
            for n, (metric, value) in enumerate(d["metrics"].items()):
                shown = f"{value:.0f}" if metric == "no_answer_found" else f"{value:.2f}"
                first = [d["name"], d["kind"]] if n == 0 else ["", ""]
                last = [str(d["ok"]), str(d["failed"])] if n == 0 else ["", ""]
                table.add_row(*first, metric, shown, *last)
        stdout.print(table)
    t = summary["timings"]
    message(f"{summary['counts']['ok']} answered in {t['generate_s']:.1f} s ({t['samples_per_s']:.2f} samples/s); "
            f"wrote {output_dir}", style="dim")


eval_command.__doc__ = (eval_command.__doc__ or "") + EXAMPLES


def _register_compare() -> None:
    eval_app.command("compare")(compare_command)


_register_compare()
