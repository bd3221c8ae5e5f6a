"""`--api_url`: `swiftcli infer` and `swiftcli chat` against a running server instead of a local engine.

The answers come from `swiftcli.inference.remote.RemoteModel`; this module holds the options, refuses the ones
that only make sense with a local model, and prints what the local paths print.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any

import typer

from swiftcli.cli.options import GenerationOptions, ModelOptions, defaults_of

SERVER_PANEL = "Server"
DEFAULT_CONCURRENCY = 8

ApiUrlOption = Annotated[str | None, typer.Option(
    "--api_url", "--api-url", envvar="SWIFTCLI_API_URL", show_envvar=True, rich_help_panel=SERVER_PANEL,
    help="Ask a running OpenAI-compatible server (e.g. swiftcli deploy) instead of loading the model.")]
ApiKeyOption = Annotated[str | None, typer.Option(
    "--api_key", "--api-key", envvar="SWIFTCLI_API_KEY", show_envvar=True, rich_help_panel=SERVER_PANEL,
    help="API key for --api_url.")]

# The model options that still mean something with a server: which model it serves, and the system prompt.
_SERVER_MODEL_OPTIONS = {"model_type", "model_id_or_path", "system"}


@dataclass(frozen=True)
class ApiOptions:
    url: str
    key: str | None = None
    concurrency: int = DEFAULT_CONCURRENCY

    def __post_init__(self) -> None:
        from swiftcli.cli.options import check_positive

        check_positive(self.concurrency, "max_concurrency")


def check_options(model: ModelOptions, *also_local: tuple[str, bool]) -> None:
    """Refuse, by name, options that load or configure a local model: a server has its own."""
    from swiftcli.errors import UsageError

    defaults = defaults_of(ModelOptions)
    given = [f.name for f in fields(ModelOptions)
             if f.name not in _SERVER_MODEL_OPTIONS and getattr(model, f.name) != defaults[f.name]]
    given += [name for name, is_set in also_local if is_set]
    if given:
        names = ", ".join(f"--{name}" for name in given)
        raise UsageError(f"--api_url asks a running server; {names} configure a local model",
                         "leave them out, or drop --api_url to load the model here")


def sampling(gen: GenerationOptions, **command_defaults: Any) -> dict[str, Any]:
    """What to send: the command's defaults and what the user typed; the rest stays the server's default."""
    values = {**command_defaults, **{k: v for k, v in vars(gen).items() if v is not None}}
    if values.get("do_sample") is False:
        values["temperature"] = 0.0
    if values.get("temperature") == 0:
        values["do_sample"] = False
    from swiftcli.config.spec import GenerationConfig

    GenerationConfig(**values)  # the same checks as a local run, before any request
    return values


def connect(api: ApiOptions, model: ModelOptions) -> Any:
    from swiftcli.inference.remote import RemoteModel

    return RemoteModel.connect(api.url, api.key, model.model_type or model.model_id_or_path)


def run_queries(api: ApiOptions, queries: list[str], output: str, model: ModelOptions, gen: GenerationOptions,
                command_defaults: dict[str, Any]) -> None:
    import json

    values = sampling(gen, **command_defaults)
    remote = connect(api, model)
    try:
        requests = [{"query": q, "system": model.system} for q in queries]
        for answer in remote.answer_all(requests, values, api.concurrency):
            if output == "json":
                row = {"query": answer.query, "response": answer.response, "finish_reason": answer.finish_reason,
                       "usage": {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.output_tokens,
                                 "total_tokens": answer.prompt_tokens + answer.output_tokens}}
                print(json.dumps(row, ensure_ascii=False), flush=True)
            else:
                print(answer.response, flush=True)
    finally:
        remote.close()


def run_dataset(api: ApiOptions, opts: Any, output: str, model: ModelOptions, gen: GenerationOptions,
                command_defaults: dict[str, Any]) -> None:
    """The dataset mode of `swiftcli infer` through a server: the same rows, result file, resume and summary."""
    from swiftcli.cli.errors import stderr
    from swiftcli.cli.infer import _progress, _summary, dataset_rows, result_target
    from swiftcli.cli.state import quiet
    from swiftcli.data.runs import ResultFile, RunStats, StreamWriter
    from swiftcli.errors import InputError
    from swiftcli.inference.remote import run_rows_remote

    values = sampling(gen, **command_defaults)
    rows = dataset_rows(opts, model)
    if not rows:
        raise InputError("the dataset has no rows to answer")
    target = result_target(opts)
    writer: ResultFile | StreamWriter = ResultFile(target) if target is not None else StreamWriter(sys.stdout)
    done = writer.resume(rows) if isinstance(writer, ResultFile) else 0
    stats = RunStats(resumed=done, result_path=str(target) if target else None)
    if done == len(rows):
        _summary(stats, len(rows), output, quiet())
        return
    if done:
        stderr.print(f"Resuming {target}: {done} of {len(rows)} rows already done.", highlight=False)
    t0 = time.perf_counter()
    remote = connect(api, model)
    stats.startup_seconds = time.perf_counter() - t0
    if isinstance(writer, ResultFile):
        writer.open()
    progress = _progress(len(rows) - done, quiet())
    try:
        with progress:
            task = progress.add_task("rows", total=len(rows) - done, tok_s=0.0)

            def advance(s: RunStats) -> None:
                progress.update(task, completed=s.rows, tok_s=s.output_tokens_per_second)

            run_rows_remote(remote, rows, values, writer, done, stats, advance,
                            api.concurrency)
    except KeyboardInterrupt:
        if not isinstance(writer, ResultFile):
            raise
        writer.close()
        stderr.print(f"[yellow]Interrupted:[/] {writer.written} of {len(rows)} rows are in {target}; "
                     "run the same command again to resume.", highlight=False)
        raise typer.Exit(130) from None
    finally:
        remote.close()
        if isinstance(writer, ResultFile):
            writer.close()
    _summary(stats, len(rows), output, quiet())


def run_chat(api: ApiOptions, model: ModelOptions, gen: GenerationOptions, markdown: bool = True,
             history_file: Path | None = None) -> None:
    from rich.console import Console

    from swiftcli.cli.remote_chat import RemoteRepl

    values = sampling(gen)
    remote = connect(api, model)
    try:
        RemoteRepl.start(remote, values, model.system, Console(highlight=False), markdown, history_file).run()
    finally:
        remote.close()
