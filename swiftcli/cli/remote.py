"""`--api_url`: `swiftcli infer` and `swiftcli chat` against a running server instead of a local engine.

The answers come from `swiftcli.generation.remote.RemoteModel`; this module holds the options, refuses the ones
that only make sense with a local model, and prints what the local paths print.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any

import typer

from swiftcli.apidialect import carried, refuse_uncarried
from swiftcli.cli.options import check_positive
from swiftcli.cli.output import stdout
from swiftcli.config.commands import ApiDialectOptions
from swiftcli.config.options import ModelOptions
from swiftcli.config.sampling import layer_sampling, sampling_to_send
from swiftcli.config.spec import EngineConfig, GenerationOverrides
from swiftcli.data.fingerprint import dataset_hash
from swiftcli.errors import UsageError
from swiftcli.generation.remote import DEFAULT_CONCURRENCY, RemoteModel

__all__ = ["DEFAULT_CONCURRENCY", "ApiKeyOption", "ApiOptions", "ApiUrlOption", "check_options", "run_chat",
           "run_dataset", "run_queries", "run_rows_remote", "sampling"]

SERVER_PANEL = "Server"

ApiUrlOption = Annotated[str | None, typer.Option(
    "--api-url", envvar="SWIFTCLI_API_URL", show_envvar=True, rich_help_panel=SERVER_PANEL,
    help="Ask a running OpenAI-compatible server (e.g. swiftcli deploy) instead of loading the model.")]
ApiKeyOption = Annotated[str | None, typer.Option(
    "--api-key", envvar="SWIFTCLI_API_KEY", show_envvar=True, rich_help_panel=SERVER_PANEL,
    help="API key for --api-url.")]

# The model options that still mean something with a server: which model it serves, and the system prompt.
_SERVER_MODEL_OPTIONS = {"model_type", "model_id_or_path", "system"}


@dataclass(frozen=True)
class ApiOptions:
    url: str
    key: str | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    dialect: str = "chat"

    def __post_init__(self) -> None:
        check_positive(self.concurrency, "max_concurrency")


def check_options(model: ModelOptions, engine: EngineConfig, *also_local: tuple[str, bool]) -> None:
    """Refuse, by name, options that load or configure a local model: a server has its own."""

    given = [f.name for f in fields(ModelOptions)
             if f.name not in _SERVER_MODEL_OPTIONS and getattr(model, f.name) != f.default]
    plain = EngineConfig()
    given += [f.metadata.get("name") or f.name for f in fields(EngineConfig)
              if f.metadata.get("cli") is not False and getattr(engine, f.name) != getattr(plain, f.name)]
    given += [name for name, is_set in also_local if is_set]
    if given:
        names = ", ".join(f"--{name}" for name in given)
        raise UsageError(f"--api_url asks a running server; {names} configure a local model",
                         "leave them out, or drop --api_url to load the model here")


def sampling(gen: GenerationOverrides, **command_defaults: Any) -> dict[str, Any]:
    """What to send: the one sampling rule (`swiftcli.config.sampling`) over the command's defaults and what
    the user typed, checked as a local run checks it; the rest stays the server's default."""

    return sampling_to_send(gen.given(), **command_defaults)


def checked_sampling(api: ApiOptions, gen: GenerationOverrides, **command_defaults: Any) -> dict[str, Any]:
    """`sampling`, with what the user typed and the API has no field for refused by name, and the command's
    defaults it cannot carry left to the server."""
    refuse_uncarried(api.dialect, gen.given())
    return carried(api.dialect, sampling(gen, **command_defaults))


def connect(api: ApiOptions, model: ModelOptions) -> Any:
    return RemoteModel.connect(api.url, api.key, model.model_type or model.model_id_or_path, api.dialect)


def check_dialect(api_url: str | None, dialect: ApiDialectOptions) -> str:
    """The dialect to ask --api_url in; a dialect other than chat without --api_url is refused."""
    if not api_url and dialect.api_dialect != "chat":
        raise UsageError("--api_dialect applies to --api_url", "add --api_url URL, or unset SWIFTCLI_API_DIALECT")
    return dialect.api_dialect


def run_queries(api: ApiOptions, queries: list[str], output: str, model: ModelOptions, gen: GenerationOverrides,
                command_defaults: dict[str, Any]) -> None:
    # lazy: cli.infer and cli.remote_chat import this module (a cycle inside cli)
    from swiftcli.cli.infer import print_answers

    values = checked_sampling(api, gen, **command_defaults)
    remote = connect(api, model)
    try:
        requests = [{"query": q, "system": model.system} for q in queries]
        print_answers(remote.answer_all(requests, values, api.concurrency), output)
    finally:
        remote.close()


def run_dataset(api: ApiOptions, selection: Any, target: Path | None, overwrite: bool, output: str,
                model: ModelOptions, gen: GenerationOverrides, command_defaults: dict[str, Any]) -> None:
    """The dataset mode of `swiftcli infer` through a server: the same rows, result file, resume and summary."""
    # lazy: cli.infer and cli.remote_chat import this module (a cycle inside cli)
    from swiftcli.cli.infer import answer_dataset


    values = checked_sampling(api, gen, **command_defaults)

    def fingerprint(rows: list[Any]) -> dict[str, Any]:
        return {"model": {"url": api.url, "name": model.model_type or model.model_id_or_path}, "adapters": [],
                "template": "the server's", "system": model.system, "backend": "api", "dtype": None,
                "generation": values, "dataset": dataset_hash([row.sample for row in rows])}

    @contextlib.contextmanager
    def server() -> Iterator[Any]:
        remote = connect(api, model)
        try:
            yield lambda rows, writer, done, stats, on_row: run_rows_remote(
                remote, rows, values, writer, done, stats, on_row, api.concurrency)
        finally:
            remote.close()

    answer_dataset(selection, target, overwrite, output, None, fingerprint, server)


def run_rows_remote(model: Any, rows: Sequence[Any], sampling: Mapping[str, Any], writer: Any,
                    start: int = 0, stats: Any = None, on_row: Callable[[Any], None] | None = None,
                    concurrency: int = DEFAULT_CONCURRENCY) -> Any:
    """`swiftcli.data.runs.run_rows` through a server: rows[start:] with bounded concurrency, each finished row
    to `writer` (which keeps input order, so a result file stays a resumable prefix)."""

    # looked up per call, so a lent engine (tests) or a swapped function takes effect
    from swiftcli.data.runs import RunStats, result_row  # here, not in generation: generation knows no data rows

    stats = stats or RunStats()
    t0 = time.perf_counter()

    def finished(offset: int, answer: Any) -> None:
        i = start + offset
        writer.add(i, result_row(rows[i].sample, answer.response))
        stats.count(answer.prompt_tokens, answer.output_tokens, t0)
        if on_row is not None:
            on_row(stats)

    model.answer_all([row.sample.request() for row in rows[start:]], sampling, concurrency, finished)
    stats.seconds = time.perf_counter() - t0
    return stats



def run_chat(api: ApiOptions, model: ModelOptions, gen: GenerationOverrides, markdown: bool = True,
             history_file: Path | None = None) -> None:
    # lazy: cli.infer and cli.remote_chat import this module (a cycle inside cli)
    from swiftcli.cli.remote_chat import RemoteRepl

    values = checked_sampling(api, gen)  # bad settings fail before connecting
    remote = connect(api, model)
    if remote.chat_sampling:  # start where a local chat with this model would, under what the user set
        # the server checked its own listing; what the API cannot carry of it stays the server's
        values = carried(api.dialect, layer_sampling(gen.given(), **remote.chat_sampling))
    try:
        RemoteRepl.start(remote, values, model.system, stdout, markdown, history_file).run()
    finally:
        remote.close()
