"""`swiftcli infer`: answers for --query (or piped stdin) on stdout, dataset files to a resumable result file,
or, with neither on a terminal, the chat. Logs, progress and the summary go to stderr."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from swiftcli.cli.errors import handled
from swiftcli.cli.options import BoolValue, GenerationOptions, ModelOptions, parse_bool, with_options
from swiftcli.cli.remote import SERVER_PANEL, ApiKeyOption, ApiUrlOption

EXAMPLES = """

[b]Examples[/b]

  swiftcli infer --query "What is the capital of France?"

  cat question.txt | swiftcli infer --model_type qwen2_5-7b-instruct --output json

  swiftcli infer --val_dataset rows.jsonl --result_file out.jsonl    [dim]# run it again to resume[/dim]

  swiftcli infer --api_url http://127.0.0.1:8000/v1 --query "Hi"    [dim]# a running deploy: no start-up[/dim]
"""

DATASET_PANEL = "Dataset"

# Scripts want reproducible answers: greedy unless asked otherwise.
INFER_DEFAULTS = {"temperature": 0.0, "do_sample": False}


@with_options(model=ModelOptions, gen=GenerationOptions)
@handled
def infer_command(
    query: Annotated[list[str] | None, typer.Option("--query", "-q", help="A question (repeatable).")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="text or json (JSON lines with usage; with a "
                                        "dataset, a JSON summary line).", metavar="text|json")] = "text",
    val_dataset: Annotated[list[str] | None, typer.Option(
        "--val_dataset", "--val-dataset", help="Dataset file: .jsonl, .json or .csv (repeatable).",
        rich_help_panel=DATASET_PANEL)] = None,
    val_dataset_sample: Annotated[int, typer.Option(
        "--val_dataset_sample", "--val-dataset-sample", help="Answer a seeded random sample of N rows (-1: all).",
        rich_help_panel=DATASET_PANEL)] = -1,
    result_file: Annotated[Path | None, typer.Option(
        "--result_file", "--result-file", help="Write result rows here; rerun with the same file to resume.",
        rich_help_panel=DATASET_PANEL, dir_okay=False)] = None,
    result_dir: Annotated[Path | None, typer.Option(
        "--result_dir", "--result-dir", help="Write results to DIR/<time>.jsonl. Default, with neither: stdout.",
        rich_help_panel=DATASET_PANEL, file_okay=False)] = None,
    load_dataset_config: Annotated[BoolValue, typer.Option(
        "--load_dataset_config", "--load-dataset-config", parser=parse_bool, metavar="BOOL",
        help="Take the dataset and its validation split from --ckpt_dir's sft_args.json/args.json.",
        rich_help_panel=DATASET_PANEL)] = False,  # type: ignore[assignment]
    dataset_seed: Annotated[int | None, typer.Option(
        "--dataset_seed", "--dataset-seed", help="Seed of sampling and splitting; default 42 (or the checkpoint's).",
        rich_help_panel=DATASET_PANEL)] = None,
    skip_bad_rows: Annotated[BoolValue, typer.Option(
        "--skip_bad_rows", "--skip-bad-rows", parser=parse_bool, metavar="BOOL",
        help="Skip rows without a query (with a warning) instead of stopping.",
        rich_help_panel=DATASET_PANEL)] = False,  # type: ignore[assignment]
    more_datasets: Annotated[list[str] | None, typer.Argument(
        hidden=True, metavar="FILE", help="More dataset files after --val_dataset, as ms-swift takes them.")]
    = None,
    api_url: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
    max_concurrency: Annotated[int | None, typer.Option(
        "--max_concurrency", "--max-concurrency", help="Requests in flight at once with --api_url; default 8.",
        rich_help_panel=SERVER_PANEL)] = None,
    *,
    model: ModelOptions,
    gen: GenerationOptions,
) -> None:
    """Answer questions with the model: the answers alone on stdout, or a dataset into a result file."""
    from swiftcli.errors import UsageError

    if output not in ("text", "json"):
        raise UsageError(f"--output must be text or json, not {output!r}")
    api = None
    if api_url:
        from swiftcli.cli import remote

        remote.check_options(model, ("load_dataset_config", bool(load_dataset_config)))
        api = remote.ApiOptions(api_url, api_key, max_concurrency or remote.DEFAULT_CONCURRENCY)
    elif max_concurrency is not None:
        raise UsageError("--max_concurrency applies to --api_url requests", "add --api_url URL, or leave it out")
    if more_datasets:
        # ms-swift writes `--val_dataset a.jsonl b.jsonl`; the files after the first arrive here.
        if not val_dataset:
            raise UsageError(f"unexpected argument {more_datasets[0]!r}",
                             "questions go in --query TEXT, dataset files in --val_dataset FILE")
        val_dataset = [*val_dataset, *more_datasets]
    if val_dataset or load_dataset_config:
        if query:
            raise UsageError("give either --query or a dataset, not both")
        if result_file and result_dir:
            raise UsageError("give --result_file or --result_dir, not both")
        opts = DatasetOptions(list(val_dataset or []), val_dataset_sample, result_file, result_dir,
                              bool(load_dataset_config), dataset_seed, bool(skip_bad_rows))
        if api:
            remote.run_dataset(api, opts, output, model, gen, INFER_DEFAULTS)
        else:
            run_dataset(opts, output, model, gen)
        return
    queries = list(query or [])
    if not queries:
        if sys.stdin.isatty():
            from swiftcli.cli.chat import run_chat

            run_chat(model, gen, api=api)
            return
        text = sys.stdin.read().strip()
        if not text:
            raise UsageError("stdin was empty: nothing to answer", "pipe a question, or pass --query TEXT")
        queries = [text]
    if api:
        remote.run_queries(api, queries, output, model, gen, INFER_DEFAULTS)
    else:
        run_queries(queries, output, model, gen)


def run_queries(queries: list[str], output: str, model: ModelOptions, gen: GenerationOptions) -> None:
    from swiftcli.cli.common import generation_config, load
    from swiftcli.inference.core import infer

    loaded = load(model, seed=gen.seed)
    config = generation_config(loaded.engine.generation_config, gen, **INFER_DEFAULTS)
    requests = [{"query": q, "system": model.system} for q in queries]
    for result in infer(loaded.engine, loaded.template, requests, config):
        if output == "json":
            row = {"query": result.query, "response": result.response, "finish_reason": result.finish_reason,
                   "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.output_tokens,
                             "total_tokens": result.prompt_tokens + result.output_tokens}}
            print(json.dumps(row, ensure_ascii=False), flush=True)
        else:
            print(result.response, flush=True)


class DatasetOptions:
    def __init__(self, files: list[str], sample: int, result_file: Path | None, result_dir: Path | None,
                 load_config: bool, seed: int | None, skip_bad_rows: bool) -> None:
        self.files = files
        self.sample = sample
        self.result_file = result_file
        self.result_dir = result_dir
        self.load_config = load_config
        self.seed = seed
        self.skip_bad_rows = skip_bad_rows


def dataset_rows(opts: DatasetOptions, model: ModelOptions) -> list[Any]:
    """The rows to answer: --val_dataset files, or the checkpoint's validation data with --load_dataset_config."""
    from swiftcli.cli.errors import stderr
    from swiftcli.config.resolve import find_ckpt_args
    from swiftcli.data.runs import (
        DEFAULT_DATASET_SEED,
        checkpoint_datasets,
        load_rows,
        sample_rows,
        split_validation,
    )
    from swiftcli.errors import UsageError

    if opts.sample < -1:
        raise UsageError("--val_dataset_sample must be -1 (all rows) or a count")

    def warn(record: Any, error: Any) -> None:
        stderr.print(f"[yellow]Skipped[/] {error.message}", markup=True, highlight=False)

    seed = opts.seed
    if opts.load_config and not opts.files:
        if not model.ckpt_dir:
            raise UsageError("--load_dataset_config true needs --ckpt_dir (a checkpoint with sft_args.json)")
        ckpt = Path(model.ckpt_dir)
        args = find_ckpt_args(ckpt)
        if not args:
            raise UsageError(f"no sft_args.json or args.json in {ckpt} or its parent",
                             "pass --val_dataset FILE instead")
        files, whole, ratio, ckpt_seed = checkpoint_datasets(args, ckpt)
        seed = ckpt_seed if seed is None else seed
        rows = load_rows(files, -1, seed, opts.skip_bad_rows, warn)
        if not whole:
            rows = split_validation(rows, ratio, seed)
        return sample_rows(rows, opts.sample, seed)
    return load_rows(opts.files, opts.sample, DEFAULT_DATASET_SEED if seed is None else seed, opts.skip_bad_rows,
                     warn)


def result_target(opts: DatasetOptions) -> Path | None:
    if opts.result_file:
        return opts.result_file
    if opts.result_dir:
        return opts.result_dir / time.strftime("%Y%m%d-%H%M%S.jsonl")
    return None


def run_dataset(opts: DatasetOptions, output: str, model: ModelOptions, gen: GenerationOptions) -> None:
    from swiftcli.cli.common import generation_config, load
    from swiftcli.cli.errors import stderr
    from swiftcli.cli.state import quiet
    from swiftcli.data.runs import ResultFile, RunStats, StreamWriter, run_rows
    from swiftcli.errors import InputError

    # Read and check every row before the engine starts: a bad file fails in a second, not after start-up.
    rows = dataset_rows(opts, model)
    if not rows:
        raise InputError("the dataset has no rows to answer")
    target = result_target(opts)
    writer: ResultFile | StreamWriter
    if target is not None:
        writer = ResultFile(target)
        done = writer.resume(rows)
    else:
        writer, done = StreamWriter(sys.stdout), 0
    stats = RunStats(resumed=done, result_path=str(target) if target else None)
    if done == len(rows):
        _summary(stats, len(rows), output, quiet())
        return
    if done:
        stderr.print(f"Resuming {target}: {done} of {len(rows)} rows already done.", highlight=False)

    t0 = time.perf_counter()
    loaded = load(model, seed=gen.seed)
    stats.startup_seconds = time.perf_counter() - t0
    config = generation_config(loaded.engine.generation_config, gen, **INFER_DEFAULTS)
    if isinstance(writer, ResultFile):
        writer.open()
    progress = _progress(len(rows) - done, quiet())
    try:
        with progress:
            task = progress.add_task("rows", total=len(rows) - done, tok_s=0.0)

            def advance(s: RunStats) -> None:
                progress.update(task, completed=s.rows, tok_s=s.output_tokens_per_second)

            run_rows(loaded.engine, loaded.template, rows, config, writer, done, stats, advance)
    except KeyboardInterrupt:
        if not isinstance(writer, ResultFile):
            raise
        writer.close()
        stderr.print(f"[yellow]Interrupted:[/] {writer.written} of {len(rows)} rows are in {target}; "
                     "run the same command again to resume.", highlight=False)
        raise typer.Exit(130) from None
    finally:
        if isinstance(writer, ResultFile):
            writer.close()
    _summary(stats, len(rows), output, quiet())


def _progress(total: int, hidden: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from swiftcli.cli.errors import stderr

    return Progress(TextColumn("Answering"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[tok_s]:.1f} tok/s"), TimeElapsedColumn(),
                    console=stderr, disable=hidden, transient=False, refresh_per_second=4)


def _summary(stats: Any, total: int, output: str, hidden: bool) -> None:
    from swiftcli.cli.errors import stderr

    data = {**stats.to_dict(), "total_rows": total}
    if output == "json" and stats.result_path:
        print(json.dumps(data), flush=True)
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
