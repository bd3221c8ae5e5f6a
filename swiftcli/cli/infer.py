"""`swiftcli infer`: answers for --query (or piped stdin) on stdout, dataset files to a resumable result file,
or, with neither on a terminal, the chat. Logs, progress and the summary go to stderr."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import MofNCompleteColumn, TextColumn, TimeElapsedColumn

from swiftcli.cli import output, remote
from swiftcli.cli.chat import run_chat
from swiftcli.cli.common import check_before_loading, load
from swiftcli.cli.errors import handled
from swiftcli.cli.infer_embed import check_embedding_options, run_embedding
from swiftcli.cli.options import MaxConcurrencyOption, PromptArgument, questions, with_options
from swiftcli.cli.output import message, result, stderr, warn
from swiftcli.cli.remote import ApiKeyOption, ApiUrlOption, check_dialect
from swiftcli.cli.scaling import ray_dataset_answerer
from swiftcli.cli.state import quiet
from swiftcli.config.commands import ApiDialectOptions, DatasetOptions, OutputOptions, QueryOptions
from swiftcli.config.options import ModelOptions
from swiftcli.config.spec import EngineConfig, GenerationConfig, GenerationOverrides
from swiftcli.data.fingerprint import run_fingerprint
from swiftcli.data.records import to_sample
from swiftcli.data.runs import ResultFile, RunStats, StreamWriter, run_rows
from swiftcli.data.selection import DatasetSelection, select_rows
from swiftcli.engines import default_backend
from swiftcli.engines.loader import merge_generation
from swiftcli.engines.modalities import check_accepts
from swiftcli.errors import InputError, UsageError
from swiftcli.generation.core import infer
from swiftcli.generation.media import load_image, load_video
from swiftcli.generation.structured import check_structured_output
from swiftcli.generation.vision import request_media

EXAMPLES = """

[b]Examples[/b]

  swiftcli infer "What is the capital of France?"

  swiftcli infer --val-dataset rows.jsonl --result-file out.jsonl    [dim]# run it again to resume[/dim]

  swiftcli infer --api-url http://127.0.0.1:8000/v1 "Hi" -o json    [dim]# a running deploy: no start-up[/dim]
"""

# Scripts want reproducible answers: greedy unless asked otherwise.
INFER_DEFAULTS = {"temperature": 0.0, "do_sample": False}


@with_options(ask=QueryOptions, out=OutputOptions, data=DatasetOptions, model=ModelOptions, engine=EngineConfig,
              gen=GenerationOverrides, dialect=ApiDialectOptions)
@handled
def infer_command(
    prompt: PromptArgument = None,
    api_url: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
    max_concurrency: MaxConcurrencyOption = None,
    task: Annotated[str, typer.Option(
        "--task", metavar="TASK",
        help="chat: answers; embedding: one vector per question or row, as JSON lines.")] = "chat",
    *,
    ask: QueryOptions,
    out: OutputOptions,
    data: DatasetOptions,
    model: ModelOptions,
    engine: EngineConfig,
    gen: GenerationOverrides,
    dialect: ApiDialectOptions,
) -> None:
    """Answer questions with the model: the answers alone on stdout, or a dataset into a result file."""

    images, videos = list(ask.images or []), list(ask.videos or [])
    if images and ask.query and prompt:
        images, prompt = [*images, *prompt], None  # ms-swift's form: --query Q --images a.jpg b.png
    elif videos and ask.query and prompt:
        videos, prompt = [*videos, *prompt], None
    queries = questions(prompt, ask.query)
    api_dialect = check_dialect(api_url, dialect)
    if task != "chat" and api_dialect != "chat":
        raise UsageError(f"--api_dialect {api_dialect} asks for answers; --task {task} asks /v1/embeddings",
                         "leave --api_dialect out")
    if task != "chat":
        embed(task, queries, data, api_url, ask.structured_output, model, engine, gen)
        return
    constraint = structured(ask.structured_output)
    api = api_options(api_url, api_key, max_concurrency, model, engine, data, constraint,
                      api_dialect)
    if (images or videos) and (api is not None or data.active):
        raise UsageError(f"{'--images' if images else '--videos'} goes with a question to a local model",
                         "datasets list their images and videos in 'images' and 'videos' columns")
    media = {"images": images, "videos": videos}
    if api is None:
        check_before_loading(model, engine)
    if data.active:
        if queries:
            raise UsageError("give either a question or a dataset, not both")
        answer_rows(data, out.output, model, engine, gen, constraint, api)
    elif queries or images or videos or not sys.stdin.isatty():
        if queries:
            answer_questions(queries, out.output, model, engine, gen, constraint, api, media)
        else:
            text = read_stdin()
            request = json_request(text)
            if request is not None and api is not None and (request.get("images") or request.get("videos")):
                raise UsageError("images and videos in stdin JSON go to a local model, not --api-url")
            if request is not None and api is None:
                run_queries([], out.output, model, engine, gen, constraint, media=media, stdin_request=request)
            else:
                answer_questions([text], out.output, model, engine, gen, constraint, api, media)
    else:
        if constraint is not None:
            raise UsageError("--structured-output applies to questions and datasets, not the chat")

        run_chat(model, engine, gen, api=api)


def embed(task: str, queries: list[str], data: DatasetOptions, api_url: str | None, structured_output: str | None,
          model: ModelOptions, engine: EngineConfig, gen: GenerationOverrides) -> None:
    """--task embedding: the questions' or the dataset rows' vectors."""

    if task != "embedding":
        raise UsageError(f"--task must be chat or embedding, not {task!r}")
    check_embedding_options(api_url, structured_output, gen.given())
    if data.result_file and data.result_dir:
        raise UsageError("give --result-file or --result-dir, not both")
    if data.active and queries:
        raise UsageError("give either a question or a dataset, not both")
    texts = list(queries)
    if data.active:
        selection = DatasetSelection(list(data.val_dataset or []), data.val_dataset_sample,
                                     data.load_dataset_config, data.dataset_seed, data.skip_bad_rows)
        rows = select_rows(selection, model.ckpt_dir, lambda record, error: warn(f"skipped {error.message}"))
        texts = [row.sample.query for row in rows]
    elif not texts:
        raise UsageError("--task embedding needs a question or --val-dataset FILE")
    run_embedding(texts, result_target(data.result_file, data.result_dir), data.overwrite, model, engine)


def structured(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None

    return check_structured_output(text, "--structured-output")


def api_options(api_url: str | None, api_key: str | None, max_concurrency: int | None, model: ModelOptions,
                engine: EngineConfig, data: DatasetOptions, constraint: dict[str, Any] | None,
                dialect: str = "chat") -> Any:
    """The server to ask with --api-url (local-model options refused), else None."""

    if not api_url:
        if max_concurrency is not None:
            raise UsageError("--max-concurrency applies to --api-url requests", "add --api-url URL, or leave it out")
        return None
    remote.check_options(model, engine, ("load_dataset_config", data.load_dataset_config),
                         ("structured_output", constraint is not None))
    concurrency = remote.DEFAULT_CONCURRENCY if max_concurrency is None else max_concurrency
    return remote.ApiOptions(api_url, api_key, concurrency, dialect)


def read_stdin() -> str:
    text = sys.stdin.read().strip()
    if not text:
        raise UsageError("stdin was empty: nothing to answer", 'pipe a question, or pass it: swiftcli infer "..."')
    return text


def answer_questions(queries: list[str], output: str, model: ModelOptions, engine: EngineConfig,
                     gen: GenerationOverrides, constraint: dict[str, Any] | None, api: Any,
                     media: dict[str, list[str]] | None = None) -> None:
    if api is not None:
        remote.run_queries(api, queries, output, model, gen, INFER_DEFAULTS)
    else:
        run_queries(queries, output, model, engine, gen, constraint, media=media)


def json_request(text: str) -> dict[str, Any] | None:
    """Piped stdin that is one JSON object (a dataset row: query/messages, images) as a request; None for text."""
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None

    return to_sample(data, Path.cwd()).request()


def answer_rows(data: DatasetOptions, output: str, model: ModelOptions, engine: EngineConfig,
                gen: GenerationOverrides, constraint: dict[str, Any] | None, api: Any) -> None:
    selection = DatasetSelection(list(data.val_dataset or []), data.val_dataset_sample, data.load_dataset_config,
                                 data.dataset_seed, data.skip_bad_rows)
    target = result_target(data.result_file, data.result_dir)
    if api is not None:
        remote.run_dataset(api, selection, target, data.overwrite, output, model, gen, INFER_DEFAULTS)
    else:
        run_dataset(selection, target, data.overwrite, output, model, engine, gen, constraint)


def print_answers(answers: Any, output: str) -> None:
    """Each answer on stdout as it comes: the text, or a JSON line with usage."""

    for answer in answers:
        if output == "json":
            row = {"query": answer.query, "response": answer.response, "finish_reason": answer.finish_reason,
                   "usage": {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.output_tokens,
                             "total_tokens": answer.prompt_tokens + answer.output_tokens}}
            result(json.dumps(row, ensure_ascii=False))
        else:
            result(answer.response)


def run_queries(queries: list[str], output: str, model: ModelOptions, engine: EngineConfig,
                gen: GenerationOverrides, constraint: dict[str, Any] | None = None, *,
                media: dict[str, list[str]] | None = None, stdin_request: dict[str, Any] | None = None) -> None:
    """`media`: {"images": [...], "videos": [...]} for every question."""
    extra: dict[str, Any] = {"structured_outputs": constraint} if constraint else {}
    extra.update({key: refs for key, refs in (media or {}).items() if refs})
    requests = [{"query": q, "system": model.system, **extra} for q in queries]
    if stdin_request is not None:
        requests = [{"system": model.system, **stdin_request, **extra}]
    check_images_early(model, requests)
    session = load("infer", model, engine, gen)
    config = merge_generation(session.engine.generation_config, gen.given(), **INFER_DEFAULTS)
    try:
        print_answers(infer(session.engine, session.template, requests, config), output)
    finally:
        session.close()


def check_images_early(model: ModelOptions, requests: list[dict[str, Any]]) -> None:
    """Before the engine starts: the model takes the images and videos, and every one opens."""
    from swiftcli.loading import resolve_spec  # looked up per call: tests patch it on its module

    for request in requests:
        media = request_media(request)
        if media:
            check_accepts(resolve_spec(model), media)
            for ref in media.get("image", []):
                load_image(ref)
            for ref in media.get("video", []):
                load_video(ref)


def result_target(result_file: str | None, result_dir: str | None) -> Path | None:
    if result_file:
        return Path(result_file).expanduser()
    if result_dir:
        return Path(result_dir).expanduser() / time.strftime("%Y%m%d-%H%M%S.jsonl")
    return None


# Answers rows[done:] into the writer: (rows, writer, done, stats, on_row) -> None
RowAnswerer = Callable[[list[Any], Any, int, Any, Callable[[Any], None]], Any]


def run_dataset(selection: Any, target: Path | None, overwrite: bool, output: str, model: ModelOptions,
                engine: EngineConfig, gen: GenerationOverrides, constraint: dict[str, Any] | None = None) -> None:
    """The dataset mode on a local engine (loaded only when rows remain to be answered)."""
    if engine.ray_address and engine.distributed_executor_backend != "ray":  # the rows go to Ray Data

        if constraint is not None:
            raise UsageError("--structured_output is not available with --ray_address", "leave one of them out")
        answer_dataset(selection, target, overwrite, output, model.ckpt_dir,
                       lambda rows: run_fingerprint_of(model, engine, gen, rows),
                       ray_dataset_answerer(model, engine, gen, selection.skip_bad_rows, INFER_DEFAULTS))
        return

    @contextlib.contextmanager
    def local() -> Iterator[RowAnswerer]:
        session = load("infer", model, engine, gen)
        config = merge_generation(session.engine.generation_config, gen.given(), **INFER_DEFAULTS)
        try:
            yield lambda rows, writer, done, stats, on_row: run_rows(
                session.engine, session.template, rows, config, writer, done, stats, on_row,
                selection.skip_bad_rows, constraint)
        finally:
            session.close()

    answer_dataset(selection, target, overwrite, output, model.ckpt_dir,
                   lambda rows: run_fingerprint_of(model, engine, gen, rows), local)


def answer_dataset(selection: Any, target: Path | None, overwrite: bool, output: str, ckpt_dir: str | None,
                   fingerprint: Callable[[list[Any]], dict[str, Any]],
                   answerer: Callable[[], contextlib.AbstractContextManager[RowAnswerer]]) -> None:
    """Select and check the rows, resume the result file (same run settings only), then answer what remains
    with `answerer` (a local engine or a server), with a progress bar and a summary on stderr."""

    rows = select_rows(selection, ckpt_dir, lambda record, error: warn(f"skipped {error.message}"))
    if not rows:
        raise InputError("the dataset has no rows to answer")
    writer: ResultFile | StreamWriter
    if target is not None:
        writer = ResultFile(target, fingerprint(rows), overwrite, selection.files)
        done = writer.resume(rows)
    else:
        writer, done = StreamWriter(sys.stdout), 0
    stats = RunStats(resumed=done, result_path=str(target) if target else None)
    try:
        if done < len(rows):
            if done:
                message(f"Resuming {target}: {done} of {len(rows)} rows already done.")
            t0 = time.perf_counter()
            with answerer() as answer:
                stats.startup_seconds = time.perf_counter() - t0
                if isinstance(writer, ResultFile):
                    writer.open()
                _answer_with_progress(answer, rows, writer, done, stats, target)
    finally:
        if isinstance(writer, ResultFile):
            writer.close()
    _summary(stats, len(rows), output, quiet())


def _answer_with_progress(answer: RowAnswerer, rows: list[Any], writer: Any, done: int, stats: Any,
                          target: Path | None) -> None:
    progress = _progress(len(rows) - done, quiet())
    try:
        with progress:
            task = progress.add_task("rows", total=len(rows) - done, tok_s=0.0)
            answer(rows, writer, done, stats,
                   lambda s: progress.update(task, completed=s.rows, tok_s=s.output_tokens_per_second))
    except KeyboardInterrupt:
        if not isinstance(writer, ResultFile):
            raise
        writer.close()
        message(f"Interrupted: {writer.written} of {len(rows)} rows are in {target}; "
                "run the same command again to resume.", style="yellow")
        raise typer.Exit(130) from None


def run_fingerprint_of(model: ModelOptions, engine: EngineConfig, gen: GenerationOverrides, rows: list[Any]
                       ) -> dict[str, Any]:
    """The settings that decide this run's answers, known before the engine starts."""
    # looked up per call, so a lent engine (tests) or a swapped function takes effect
    from swiftcli.loading import resolve_spec  # looked up per call: tests patch it on its module

    spec = resolve_spec(model, output.message)
    config = merge_generation(GenerationConfig.from_model_dir(spec.model_dir), gen.given(), **INFER_DEFAULTS)
    return run_fingerprint(spec, spec.default_system, config.to_dict(), [row.sample for row in rows],
                           model.infer_backend or default_backend(), engine.dtype)


def _progress(total: int, hidden: bool) -> Any:
    return output.progress("Answering", MofNCompleteColumn(), TextColumn("{task.fields[tok_s]:.1f} tok/s"),
                           TimeElapsedColumn(), transient=False, hidden=hidden)


def _summary(stats: Any, total: int, output: str, hidden: bool) -> None:
    data = {**stats.to_dict(), "total_rows": total}
    if output == "json" and stats.result_path:
        result(json.dumps(data))
    if hidden:
        return
    where = stats.result_path or "stdout"
    resumed = f" ({stats.resumed} done before)" if stats.resumed else ""
    stderr.print(
        f"{stats.rows} rows answered{resumed}, {total} in all. Tokens: {stats.prompt_tokens} prompt, "
        f"{stats.output_tokens} output; {stats.output_tokens_per_second:.1f} output tok/s over "
        f"{stats.seconds:.2f} s (start-up {stats.startup_seconds:.1f} s). Results: {where}",
        highlight=False,
    )


infer_command.__doc__ = (infer_command.__doc__ or "") + EXAMPLES
