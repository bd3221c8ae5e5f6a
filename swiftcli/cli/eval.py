"""`swiftcli eval`: score a model on dataset files (local engine or --eval_url); `swiftcli eval compare A B`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from swiftcli.cli.errors import handled
from swiftcli.cli.options import with_options
from swiftcli.config.options import ModelOptions
from swiftcli.config.spec import EngineConfig, GenerationOverrides

EVAL_PANEL = "Evaluation"

EXAMPLES = """

[b]Examples[/b]

  swiftcli eval --eval-dataset qa.jsonl --eval-dataset mmlu_dev.csv --eval-limit 100

  swiftcli eval --lm-eval-tasks arc_easy,my_task --lm-eval-include-path my_tasks/

  swiftcli eval --ckpt-dir 'output/v0-xxx/checkpoint-*' --eval-dataset qa.jsonl --eval-output-dir sweep1
"""


# Reproducible scores: greedy, and room for a worked math answer.
EVAL_DEFAULTS: dict[str, Any] = {"temperature": 0.0, "do_sample": False, "max_new_tokens": 512}

eval_app = typer.Typer(
    name="eval",
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@eval_app.callback(invoke_without_command=True)
@with_options(model=ModelOptions, engine=EngineConfig, gen=GenerationOverrides)
@handled
def eval_command(
    ctx: typer.Context,
    eval_dataset: Annotated[
        list[str] | None,
        typer.Option(
            "--eval-dataset",
            help="A .jsonl, .json or .csv file (repeatable).",
            rich_help_panel=EVAL_PANEL,
        ),
    ] = None,
    eval_type: Annotated[
        str | None,
        typer.Option(
            "--eval-type",
            help="generation, multiple_choice or gsm8k; default: from the columns.",
            metavar="KIND",
            rich_help_panel=EVAL_PANEL,
        ),
    ] = None,
    eval_few_shot: Annotated[
        int,
        typer.Option(
            "--eval-few-shot",
            help="Examples per prompt, drawn from the same file (not scored).",
            rich_help_panel=EVAL_PANEL,
            show_default=True,
        ),
    ] = 0,
    eval_limit: Annotated[
        int | None,
        typer.Option(
            "--eval-limit", help="Score at most N rows per dataset.", rich_help_panel=EVAL_PANEL
        ),
    ] = None,
    eval_output_dir: Annotated[
        Path | None,
        typer.Option(
            "--eval-output-dir",
            help="Where samples.jsonl and summary.json go; default eval_outputs/<timestamp>.",
            rich_help_panel=EVAL_PANEL,
        ),
    ] = None,
    eval_url: Annotated[
        str | None,
        typer.Option(
            "--eval-url",
            help="An OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1, instead of a local engine.",
            rich_help_panel=EVAL_PANEL,
        ),
    ] = None,
    eval_token: Annotated[
        str | None,
        typer.Option(
            "--eval-token",
            help="API key for --eval-url.",
            envvar="SWIFTCLI_EVAL_TOKEN",
            show_envvar=True,
            rich_help_panel=EVAL_PANEL,
        ),
    ] = None,
    eval_model: Annotated[
        str | None,
        typer.Option(
            "--eval-model",
            help="Model name at --eval-url; default the first it lists.",
            rich_help_panel=EVAL_PANEL,
        ),
    ] = None,
    eval_concurrency: Annotated[
        int,
        typer.Option(
            "--eval-concurrency",
            help="Requests in flight at once with --eval-url.",
            rich_help_panel=EVAL_PANEL,
            show_default=True,
        ),
    ] = 8,
    eval_zh_tokenizer: Annotated[
        str,
        typer.Option(
            "--eval-zh-tokenizer",
            help="How ROUGE-L splits Chinese: char or jieba.",
            metavar="char|jieba",
            rich_help_panel=EVAL_PANEL,
            show_default=True,
        ),
    ] = "char",
    eval_mc_method: Annotated[
        str,
        typer.Option(
            "--eval-mc-method",
            help="Multiple choice: loglikelihood of each option (lm-eval's acc and acc_norm) or generate "
            "(the option letter in the answer).",
            metavar="METHOD",
            rich_help_panel=EVAL_PANEL,
            show_default=True,
        ),
    ] = "loglikelihood",
    lm_eval_tasks: Annotated[
        str | None,
        typer.Option(
            "--lm-eval-tasks",
            help="lm-evaluation-harness tasks (comma-separated), run against the model behind a local server.",
            rich_help_panel=EVAL_PANEL,
        ),
    ] = None,
    lm_eval_include_path: Annotated[
        Path | None,
        typer.Option(
            "--lm-eval-include-path",
            help="A directory of lm-eval task YAMLs; their relative data files are read from it.",
            rich_help_panel=EVAL_PANEL,
        ),
    ] = None,
    *,
    model: ModelOptions,
    engine: EngineConfig,
    gen: GenerationOverrides,
) -> None:
    """Score a model on dataset files: per-sample jsonl, summary.json and a table of metrics."""
    if ctx.invoked_subcommand is not None:
        return
    from swiftcli.errors import UsageError
    from swiftcli.eval.evaluate import load_datasets
    from swiftcli.eval.metrics import ZH_TOKENIZERS
    from swiftcli.eval.report import check_output_dir, default_output_dir

    if not eval_dataset and not lm_eval_tasks:
        raise UsageError("give at least one --eval_dataset FILE or --lm_eval_tasks", "see `swiftcli eval --help`")
    if eval_mc_method not in MC_METHODS:
        raise UsageError(f"--eval_mc_method must be loglikelihood or generate, not {eval_mc_method!r}")
    if lm_eval_include_path is not None and not lm_eval_tasks:
        raise UsageError("--lm_eval_include_path needs --lm_eval_tasks")
    if eval_zh_tokenizer not in ZH_TOKENIZERS:
        raise UsageError(f"--eval_zh_tokenizer must be char or jieba, not {eval_zh_tokenizer!r}")
    if eval_url and (model.model_type or model.model_id_or_path or model.ckpt_dir):
        raise UsageError(
            "--eval_url evaluates a running server; it takes no --model_type, --model or --ckpt_dir",
            "use --eval_model to pick a model the server serves",
        )
    from swiftcli.eval.checkpoints import is_sweep

    sweep = is_sweep(model.ckpt_dir)  # a glob, a list or a run folder: every checkpoint, resumable
    if sweep:
        from swiftcli.cli.eval_sweep import check_sweep_options

        check_sweep_options(model)
    output_dir = eval_output_dir or default_output_dir()
    if not sweep:
        check_output_dir(output_dir)
    seed = gen.seed if gen.seed is not None else 0
    datasets = load_datasets(eval_dataset, eval_type, eval_few_shot, eval_limit, seed) if eval_dataset else []
    harness: dict[str, Any] | None = None
    if lm_eval_tasks:
        from swiftcli.eval.harness import check_tasks, parse_tasks

        tasks = parse_tasks(lm_eval_tasks)
        check_tasks(tasks, lm_eval_include_path)
        harness = {"tasks": tasks, "include_path": lm_eval_include_path}
    settings = {
        "eval_type": eval_type,
        "few_shot": eval_few_shot,
        "limit": eval_limit,
        "seed": seed,
        "zh_tokenizer": eval_zh_tokenizer,
        "eval_url": eval_url,
        "concurrency": eval_concurrency,
        "mc_method": eval_mc_method,
        "lm_eval_tasks": harness["tasks"] if harness else None,
    }
    if sweep:
        from swiftcli.cli.eval_sweep import run_sweep_command

        return run_sweep_command(datasets, output_dir, settings, model, engine, gen, EVAL_DEFAULTS)
    run_eval(datasets, output_dir, settings, model, engine, gen, eval_url, eval_token, eval_model, harness)


def run_eval(
    datasets: list[Any],
    output_dir: Path,
    settings: dict[str, Any],
    model: ModelOptions,
    engine: EngineConfig,
    gen: GenerationOverrides,
    url: str | None,
    token: str | None,
    model_name: str | None,
    harness: dict[str, Any] | None = None,
) -> None:
    from swiftcli.config.spec import GenerationConfig
    from swiftcli.engines.loader import merge_generation
    from swiftcli.eval.evaluate import build_summary, evaluate
    from swiftcli.eval.loglikelihood import score_local, score_remote
    from swiftcli.eval.report import write_run
    from swiftcli.eval.runner import RemoteTarget, generate_local, generate_remote, resolve_remote_model

    started = time.perf_counter()
    zh = settings["zh_tokenizer"]
    by_likelihood = settings.get("mc_method", "loglikelihood") == "loglikelihood"
    if url:
        config = merge_generation(GenerationConfig(), gen.given(), **EVAL_DEFAULTS)
        target = RemoteTarget(url.rstrip("/"), token, model_name)
        target.model = resolve_remote_model(target)

        def remote(items: list[Any]) -> Any:
            with _progress(len(items)) as advance:
                return generate_remote(target, items, config, settings["concurrency"], model.system, advance)[1]

        def remote_score(items: list[Any]) -> Any:
            with _progress(len(items)) as advance:
                return score_remote(target, target.model or "", items, settings["concurrency"], advance)

        load_s = 0.0
        outcome = evaluate(datasets, remote, zh, remote_score if by_likelihood else None)
        if harness:
            _fold(outcome, _harness(target.url, target.model or "", harness, settings, token))
        about: dict[str, Any] = {"name": target.model, "url": target.url, "backend": "remote"}
    else:
        from swiftcli.cli.common import load

        loaded = load("eval", model, engine, gen)
        load_s = time.perf_counter() - started
        config = merge_generation(loaded.engine.generation_config, gen.given(), **EVAL_DEFAULTS)

        def local(items: list[Any]) -> Any:
            with _progress(len(items)) as advance:
                return generate_local(loaded.engine, loaded.template, items, config, advance)

        def local_score(items: list[Any]) -> Any:
            with _progress(len(items)) as advance:
                return score_local(loaded.engine, items, advance)

        try:
            outcome = evaluate(datasets, local, zh, local_score if by_likelihood else None)
            if harness:
                _fold(outcome, _serve_harness(loaded, harness, settings))
        finally:
            loaded.engine.close()
        spec = loaded.spec
        about = {
            "name": spec.name,
            "model_dir": str(spec.model_dir),
            "ckpt_dir": str(spec.ckpt_dir) if spec.ckpt_dir else None,
            "template": spec.template_type,
            "backend": loaded.backend,
        }
    summary = build_summary(outcome, about, config.to_dict(), settings, load_s, time.perf_counter() - started)
    write_run(output_dir, outcome.rows, summary)
    _print_summary(summary, output_dir)


MC_METHODS = ("loglikelihood", "generate")


def _harness(url: str, model_name: str, harness: dict[str, Any], settings: dict[str, Any],
             token: str | None = None) -> dict[str, Any]:
    from swiftcli.eval.harness import run_harness

    few_shot = settings["few_shot"] or None
    return run_harness(url, model_name, harness["tasks"], harness["include_path"], settings["limit"], few_shot,
                       settings["concurrency"], token)


def _serve_harness(loaded: Any, harness: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """The loaded engine behind a server on 127.0.0.1 for as long as lm-eval runs against it."""
    from swiftcli.engines.threaded import ThreadedAsyncEngine
    from swiftcli.server.app import ServerSettings
    from swiftcli.server.local import local_server

    name = loaded.spec.name
    # The engine answers one request at a time here; it stays open for the caller to close.
    with local_server(ThreadedAsyncEngine(loaded.engine), loaded.template, ServerSettings(served_model_name=name)
                      ) as url:
        return _harness(url, name, harness, settings)


def _fold(outcome: Any, harness: dict[str, Any]) -> None:
    from swiftcli.eval.harness import fold_results

    rows, entries = fold_results(harness)
    outcome.rows += rows
    outcome.datasets += entries
    outcome.generate_s += harness["seconds"]


class _progress:
    """A Rich progress bar on stderr (hidden with --quiet); yields advance(n)."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from swiftcli.cli.output import stderr
        from swiftcli.cli.state import quiet

        self.bar = Progress(
            TextColumn("eval"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=stderr,
            transient=True,
            disable=quiet(),
        )
        self.task = self.bar.add_task("eval", total=total)

    def __enter__(self) -> Any:
        self.bar.start()
        return lambda n: self.bar.advance(self.task, n)

    def __exit__(self, *exc: Any) -> None:
        self.bar.stop()


def _print_summary(summary: dict[str, Any], output_dir: Path) -> None:
    from rich.table import Table

    from swiftcli.cli.output import stderr, stdout
    from swiftcli.cli.state import quiet

    table = Table(title=f"swiftcli eval: {summary['model'].get('name')}", title_justify="left")
    for column in ("dataset", "kind", "metric", "score", "ok", "failed"):
        table.add_column(column, justify="right" if column in ("score", "ok", "failed") else "left")
    for d in summary["datasets"]:
        first = True
        for metric, value in d["metrics"].items():
            shown = f"{value:.0f}" if metric == "no_answer_found" else f"{value:.2f}"
            table.add_row(
                d["name"] if first else "",
                d["kind"] if first else "",
                metric,
                shown,
                str(d["ok"]) if first else "",
                str(d["failed"]) if first else "",
            )
            first = False
    stdout.print(table)
    if not quiet():
        t = summary["timings"]
        stderr.print(
            f"[dim]{summary['counts']['ok']} answered in {t['generate_s']:.1f} s "
            f"({t['samples_per_s']:.2f} samples/s); wrote {output_dir}[/]"
        )


eval_command.__doc__ = (eval_command.__doc__ or "") + EXAMPLES


def _register_compare() -> None:
    from swiftcli.cli.eval_compare import compare_command

    eval_app.command("compare")(compare_command)


_register_compare()
