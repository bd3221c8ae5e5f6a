"""`--api_url`: `swiftcli infer` and `swiftcli chat` against a running server instead of a local engine.

The answers come from `swiftcli.generation.remote.RemoteModel`; this module holds the options, refuses the ones
that only make sense with a local model, and prints what the local paths print.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any

import typer

from swiftcli.config.options import ModelOptions
from swiftcli.config.spec import EngineConfig, GenerationOverrides
from swiftcli.generation.remote import DEFAULT_CONCURRENCY

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

    def __post_init__(self) -> None:
        from swiftcli.cli.options import check_positive

        check_positive(self.concurrency, "max_concurrency")


def check_options(model: ModelOptions, engine: EngineConfig, *also_local: tuple[str, bool]) -> None:
    """Refuse, by name, options that load or configure a local model: a server has its own."""
    from swiftcli.errors import UsageError

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
    from swiftcli.config.sampling import sampling_to_send

    return sampling_to_send(gen.given(), **command_defaults)


def connect(api: ApiOptions, model: ModelOptions) -> Any:
    from swiftcli.generation.remote import RemoteModel

    return RemoteModel.connect(api.url, api.key, model.model_type or model.model_id_or_path)


def run_queries(api: ApiOptions, queries: list[str], output: str, model: ModelOptions, gen: GenerationOverrides,
                command_defaults: dict[str, Any]) -> None:
    from swiftcli.cli.infer import print_answers

    values = sampling(gen, **command_defaults)
    remote = connect(api, model)
    try:
        requests = [{"query": q, "system": model.system} for q in queries]
        print_answers(remote.answer_all(requests, values, api.concurrency), output)
    finally:
        remote.close()


def run_dataset(api: ApiOptions, selection: Any, target: Path | None, overwrite: bool, output: str,
                model: ModelOptions, gen: GenerationOverrides, command_defaults: dict[str, Any]) -> None:
    """The dataset mode of `swiftcli infer` through a server: the same rows, result file, resume and summary."""
    import contextlib
    from collections.abc import Iterator

    from swiftcli.cli.infer import answer_dataset
    from swiftcli.data.fingerprint import dataset_hash

    values = sampling(gen, **command_defaults)

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
    import time

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
    from swiftcli.cli.output import stdout
    from swiftcli.cli.remote_chat import RemoteRepl
    from swiftcli.config.sampling import layer_sampling

    values = sampling(gen)  # bad settings fail before connecting
    remote = connect(api, model)
    if remote.chat_sampling:  # start where a local chat with this model would, under what the user set
        values = layer_sampling(gen.given(), **remote.chat_sampling)  # the server checked its own listing
    try:
        RemoteRepl.start(remote, values, model.system, stdout, markdown, history_file).run()
    finally:
        remote.close()
