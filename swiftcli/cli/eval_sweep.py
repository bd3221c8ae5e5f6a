"""`swiftcli eval --ckpt-dir 'output/v0-*/checkpoint-*'`: every checkpoint of a run, a table, a chart, the best."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from swiftcli.cli import output
from swiftcli.cli.output import stdout
from swiftcli.config.options import ModelOptions
from swiftcli.config.spec import EngineConfig, GenerationConfig, GenerationOverrides
from swiftcli.engines import default_backend, loader
from swiftcli.errors import UsageError
from swiftcli.eval.checkpoints import resolve_checkpoints
from swiftcli.eval.settings import EvalSettings, check_before_load, eval_generation
from swiftcli.eval.sweep import run_sweep
from swiftcli.eval.sweep_report import table


def check_sweep_options(model: ModelOptions) -> None:
    """Refuse, before anything loads, what a sweep cannot honour."""
    if model.merge_lora:
        raise UsageError("--merge-lora true merges one checkpoint; a sweep serves its LoRA checkpoints as adapters",
                         "drop --merge-lora, or give --ckpt-dir a single checkpoint")


def run_sweep_command(settings: EvalSettings, output_dir: Path, seed: int, model: ModelOptions, engine: EngineConfig,
                      gen: GenerationOverrides, output_format: str) -> None:
    """Every checkpoint of `--ckpt-dir` (a glob, a list or a run folder), scored as `eval` scores one."""
    check_sweep_options(model)
    plan = settings.plan(check_before_load(settings, output_dir, seed, sweep=True))
    output.engine_logs("eval")
    checkpoints = resolve_checkpoints(model.ckpt_dir or "", model.model_type, model.model_id_or_path,
                                      model.template_type, model.system)
    backend = model.infer_backend or default_backend()

    def say(message: str) -> None:
        output.message(message, style="dim")

    config = eval_generation(GenerationConfig.from_model_dir(checkpoints[0].spec.model_dir), gen.given())
    engine = replace(engine, seed=seed) if gen.seed is not None else engine
    say(f"{len(checkpoints)} checkpoint(s): {', '.join(c.name for c in checkpoints)}")
    with output.counting_bar("eval", sum(len(d.items) for d in plan.datasets) * len(checkpoints)) as advance:
        sweep = run_sweep(plan, checkpoints, output_dir, config, engine,
                          lambda spec, cfg: loader.start_engine(spec, cfg, backend, False), backend=backend,
                          settings=settings.recorded(seed, None), on_progress=advance, on_message=say)
    if output_format == "json":
        output.result(json.dumps(table(sweep), ensure_ascii=False, indent=2))
    else:
        print_sweep(sweep)
    say(f"{sweep.engines_started} engine(s) started; {sweep.seconds:.1f} s; wrote {output_dir} "
        f"(report: {sweep.files.get('html')})")


def print_sweep(sweep: Any) -> None:
    """The table on stdout: one row per checkpoint, one column per dataset metric; the best one named."""
    from rich.table import Table  # deferred: rich loads only when needed (a light start-up)

    columns: list[tuple[str, str]] = []
    for point in sweep.points:
        for d in point.summary["datasets"]:
            for metric in d["metrics"]:
                if (d["name"], metric) not in columns:
                    columns.append((d["name"], metric))
    table = Table(title="swiftcli eval sweep", title_justify="left")
    for column in ("checkpoint", "step", "score"):
        table.add_column(column, justify="left" if column == "checkpoint" else "right")
    for name, metric in columns:
        table.add_column(f"{name} {metric}", justify="right")
    for point in sweep.points:
        by_name = {d["name"]: d["metrics"] for d in point.summary["datasets"]}
        cells = [_num(by_name.get(n, {}).get(m)) for n, m in columns]
        mark = " *" if point.name == sweep.best else ""
        table.add_row(point.name + mark, "-" if point.step is None else str(point.step), _num(point.score()), *cells)
    console = stdout
    console.print(table)
    console.print(f"best: {sweep.best or '-'}", highlight=False)


def _num(value: Any) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.2f}"
