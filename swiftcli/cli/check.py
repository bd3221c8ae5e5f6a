"""`swiftcli check`: does vLLM answer as transformers does, for a model or a checkpoint (adapter and merge)?"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from swiftcli.cli import output
from swiftcli.cli.common import check_before_loading
from swiftcli.cli.errors import handled
from swiftcli.cli.options import with_options
from swiftcli.cli.output import result
from swiftcli.cli.output import stdout as console
from swiftcli.config.commands import OutputOptions, check_writable, option
from swiftcli.config.options import ModelOptions
from swiftcli.config.sampling import serving_generation
from swiftcli.config.spec import EngineConfig
from swiftcli.data.records import read_samples
from swiftcli.engines import loader
from swiftcli.errors import InputError, UsageError
from swiftcli.eval.parity import DEFAULT_PROMPTS, run_parity
from swiftcli.export.train_parity import TrainServeReport, serving_reports

CHECK_PANEL = "Check"

EXAMPLES = """

[b]Examples[/b]

  swiftcli check

  swiftcli check --ckpt-dir output/v0-xxx/checkpoint-100

  swiftcli check --model-type qwen2_5-7b-instruct --dtype bf16 --near-tie 0.3 --prompts-file prompts.txt
"""


@dataclass(frozen=True)
class CheckOptions:
    """What `check` compares and how strictly."""

    prompt: list[str] | None = option(None, "A prompt to compare on (repeatable); default four built-in ones.",
                                      panel=CHECK_PANEL)
    prompts_file: str | None = option(None, "A file of prompts: one per line (.txt) or .jsonl/.json/.csv rows "
                                      "with a query.", panel=CHECK_PANEL, metavar="FILE")
    max_new_tokens: int = option(32, "Tokens to compare per prompt.", panel=CHECK_PANEL)
    near_tie: float = option(0.1, "A divergence where both sides' logprob margin is below this is a near-tie "
                             "(dtype/kernel noise), not a failure.", panel=CHECK_PANEL)
    max_logprob_gap: float = option(0.05, "Fail when a shared token's logprobs differ by more.", panel=CHECK_PANEL)
    check_merged: bool = option(True, "For a LoRA checkpoint, also merge it and run the merge on vLLM.",
                                panel=CHECK_PANEL)
    output_json: str | None = option(None, "Also write the report here as JSON.", panel=CHECK_PANEL,
                                     metavar="FILE")

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise UsageError("--max-new-tokens must be at least 1")
        if self.near_tie < 0 or self.max_logprob_gap < 0:
            raise UsageError("--near-tie and --max-logprob-gap must be >= 0")
        if self.prompts_file and not Path(self.prompts_file).expanduser().is_file():
            raise UsageError(f"--prompts-file {self.prompts_file} does not exist")
        if self.output_json:
            check_writable(Path(self.output_json).expanduser(), "--output-json", file=True)


@with_options(check=CheckOptions, out=OutputOptions, model=ModelOptions, engine=EngineConfig)
@handled
def check_command(*, check: CheckOptions, out: OutputOptions, model: ModelOptions, engine: EngineConfig) -> None:
    """Run the same prompts greedily on vLLM and on transformers and compare them token by token.

    With a LoRA --ckpt-dir: transformers + adapter (the reference) vs vLLM + adapter vs the merged model on vLLM.
    Float32 by default (on CPU, what vLLM serves); --dtype bf16 checks the serving dtype, where near-ties flip.
    A --ckpt-dir is also compared with its training run (args.json): the prompt `deploy` renders (template and
    system prompt), its sampling defaults and the adapter, one line per difference (they do not change the exit
    code).
    Exit code 1 when a side diverges where both were sure, a logprob gap is too large, or a side cannot run.
    """

    if model.merge_lora:
        raise UsageError("check compares the merged model by itself: drop --merge-lora",
                         "use --check-merged false to skip the merge")
    if model.infer_backend is not None:
        raise UsageError("check runs both backends: drop --infer-backend")
    prompts = _prompts(check.prompt or [], Path(check.prompts_file) if check.prompts_file else None)
    report, training = _run(model, engine, prompts, check.max_new_tokens, check.near_tie, check.max_logprob_gap,
                            check.check_merged)
    document = json.dumps({**report.to_dict(), "train_serve": [t.to_dict() for t in training]}, indent=2,
                          ensure_ascii=False)
    if out.json:
        result(document)
    else:
        print_report(report)
        for line in [line for t in training for line in t.summary()]:
            console.print(f"train/serve {line}", highlight=False, markup=False)
    if check.output_json is not None:
        Path(check.output_json).expanduser().write_text(document + "\n", encoding="utf-8")
    if not report.ok:
        raise typer.Exit(1)


def _prompts(given: list[str], path: Path | None) -> list[str]:
    prompts = list(given)
    if path is not None:
        if not path.is_file():
            raise UsageError(f"--prompts_file {path} does not exist")
        if path.suffix in (".jsonl", ".json", ".csv"):
            prompts += [sample.query for _, sample in read_samples([path])]
        else:
            prompts += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(prompts) == len(given):
            raise InputError(f"--prompts_file {path} has no prompts")
    return prompts or list(DEFAULT_PROMPTS)


def _run(model: ModelOptions, engine: EngineConfig, prompts: list[str], max_new_tokens: int, near_tie: float,
         max_gap: float, check_merged: bool) -> tuple[Any, list[TrainServeReport]]:
    """The vLLM-vs-transformers report, and for a --ckpt-dir how `deploy` would serve it against its training
    (export.train_parity, on the tokenizer alone)."""
    # looked up per call, so a lent engine (tests) or a swapped function takes effect
    from swiftcli.loading import resolve_spec  # looked up per call: tests patch it on its module

    check_before_loading(model, engine)
    output.engine_logs("check")
    spec = resolve_spec(model, output.message)
    training = [] if not model.ckpt_dir else serving_reports(
        {Path(model.ckpt_dir).name: Path(model.ckpt_dir)}, spec, serving_generation(spec, {}),
        engine.trust_remote_code)
    dtype = engine.dtype or "float32"
    dtype = {"half": "float16", "float": "float32"}.get(dtype, dtype)

    def say(message: str) -> None:
        output.message(f"running {message}", style="dim")

    report = run_parity(spec, lambda s, c: loader.start_engine(s, c, "vllm", False), prompts, dtype=dtype,
                        max_new_tokens=max_new_tokens, near_tie=near_tie, max_logprob_gap=max_gap,
                        check_merged=check_merged, engine_config=engine, on_message=say)
    return report, training


def print_report(report: Any) -> None:
    for comparison in report.comparisons:
        table = Table(title=f"{comparison.candidate} vs {comparison.reference} ({report.dtype}, greedy)",
                      title_justify="left")
        for column in ("#", "prompt", "agree", "first diff", "max |Δlogprob|", "verdict"):
            table.add_column(column, justify="left" if column in ("prompt", "verdict") else "right")
        for i, p in enumerate(comparison.prompts, 1):
            table.add_row(str(i), _short(p.prompt), f"{p.agreed}/{p.reference_tokens}",
                          "-" if p.first_divergence is None else str(p.first_divergence),
                          f"{p.max_logprob_gap:.2e}", _verdict(p, report))
        console.print(table)
    for error in report.errors:
        console.print(f"[red]cannot run[/] {error}", highlight=False)
    status = "[green]PASS[/]" if report.ok else "[red]FAIL[/]"
    console.print(f"{status}: near-tie below a margin of {report.near_tie} nats; largest allowed logprob gap "
                  f"{report.max_logprob_gap}", highlight=False)


def _verdict(p: Any, report: Any) -> str:
    margin = "" if p.margin is None else f" (margin {p.margin:.3f})"
    if p.verdict == "near-tie":
        return f"near-tie at token {p.first_divergence}{margin}: dtype/kernel noise, not a bug"
    if p.verdict == "diverges":
        return f"[red]DIVERGES[/] at token {p.first_divergence}{margin}"
    if p.verdict == "logprob-gap":
        return f"[red]LOGPROB GAP[/] {p.max_logprob_gap:.3f} > {report.max_logprob_gap}"
    if p.verdict == "non-finite":
        return "[red]NON-FINITE logprobs[/] (NaN/inf: a broken model or adapter)"
    return "match"


def _short(text: str, width: int = 36) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


check_command.__doc__ = (check_command.__doc__ or "") + EXAMPLES
