"""One evaluation, from a plan to the run on disk: answered by a loaded engine (a single model, or one checkpoint
of a sweep) or by a server, scored by the same `Plan.outcome`, written by `finish_run`.

Progress is reported through `bar(total)`, a context manager yielding `advance(n)`; the CLI passes a progress
bar, the Python API nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from swiftcli.config.spec import GenerationConfig
from swiftcli.errors import UsageError
from swiftcli.eval.datasets import EvalItem
from swiftcli.eval.evaluate import EvalOutcome, Plan, build_summary
from swiftcli.eval.harness import fold_results, run_harness
from swiftcli.eval.loglikelihood import score_local, score_remote
from swiftcli.eval.report import write_run
from swiftcli.eval.runner import Generated, RemoteTarget, generate_local, generate_remote, resolve_remote_model
from swiftcli.eval.settings import EvalSettings, eval_generation

Progress = Callable[[int], None]
Bar = Callable[[int], AbstractContextManager[Progress]]


def no_bar(total: int) -> AbstractContextManager[Progress]:
    return nullcontext(lambda _n: None)


def answer_on_engine(engine: Any, template: Any, plan: Plan, config: GenerationConfig, *,
                     adapter: str | None = None, generated: Generated | None = None, bar: Bar = no_bar
                     ) -> EvalOutcome:
    """The one way a local engine answers and scores a plan, for a single model's run and for each checkpoint of
    a sweep alike: rows to generate from `config` (or `generated`, answers a sweep made for all its checkpoints in
    one batch), multiple choice by the options' loglikelihood unless the plan says generate. `adapter` names a
    LoRA the engine holds."""

    def generate(items: list[EvalItem]) -> Generated:
        if generated is not None:
            return generated
        with bar(len(items)) as advance:
            return generate_local(engine, template, items, config, advance, adapter)

    def score(items: list[EvalItem]) -> Generated:
        with bar(len(items)) as advance:
            return score_local(engine, items, advance, adapter=adapter)

    return plan.answer(generate, score)


def answer_remote(target: RemoteTarget, plan: Plan, config: GenerationConfig, concurrency: int,
                  system: str | None = None, bar: Bar = no_bar) -> EvalOutcome:
    """The same plan answered by an OpenAI-compatible server: chat completions, and /v1/completions with echoed
    prompt logprobs for loglikelihood."""

    def generate(items: list[EvalItem]) -> Generated:
        with bar(len(items)) as advance:
            return generate_remote(target, items, config, concurrency, system, advance)[1]

    def score(items: list[EvalItem]) -> Generated:
        with bar(len(items)) as advance:
            return score_remote(target, target.model or "", items, concurrency, advance)

    return plan.answer(generate, score)


def run_tasks(outcome: EvalOutcome, url: str, model_name: str, settings: EvalSettings,
              api_key: str | None = None) -> None:
    """lm-evaluation-harness's tasks against the server at `url`, folded into `outcome`."""
    results = run_harness(url, model_name, settings.tasks, settings.lm_eval_include_path, settings.limit,
                          settings.few_shot or None, settings.concurrency, api_key)
    rows, entries = fold_results(results)
    outcome.fold(rows, entries, results["seconds"])


def about_session(session: Any) -> dict[str, Any]:
    """The model a local run used, as summary.json records it."""
    spec = session.spec
    return {"name": spec.name, "model_dir": str(spec.model_dir), "ckpt_dir": str(spec.ckpt_dir) if spec.ckpt_dir
            else None, "template": spec.template_type, "backend": session.backend}


def finish_run(output_dir: Path, outcome: EvalOutcome, about: dict[str, Any], config: GenerationConfig,
               recorded: dict[str, Any], load_s: float, started: float) -> dict[str, Any]:
    """Write samples.jsonl and summary.json; returns the summary."""
    summary = build_summary(outcome, about, config.to_dict(), recorded, load_s, time.perf_counter() - started)
    write_run(output_dir, outcome.rows, summary)
    return summary


def run_local(settings: EvalSettings, plan: Plan, output_dir: Path, seed: int, given: Mapping[str, Any],
              load: Callable[[], Any], *, bar: Bar = no_bar,
              serve: Callable[[Any], AbstractContextManager[str]] | None = None) -> dict[str, Any]:
    """Load (`load()` returns a session: engine, template, spec, backend), answer and score the plan, run lm-eval's
    tasks against `serve(session)` (a server's base URL for as long as it is entered) when asked, close the
    engine, write the run; returns the summary."""
    started = time.perf_counter()
    session = load()
    load_s = time.perf_counter() - started
    config = eval_generation(session.engine.generation_config, dict(given))
    try:
        outcome = answer_on_engine(session.engine, session.template, plan, config, bar=bar)
        if settings.lm_eval_tasks:
            if serve is None:
                raise UsageError("--lm-eval-tasks needs a server for the loaded model, and none was given")
            with serve(session) as url:
                run_tasks(outcome, url, session.spec.name, settings)
    finally:
        session.engine.close()
    return finish_run(output_dir, outcome, about_session(session), config, settings.recorded(seed, None), load_s,
                      started)


def run_remote(settings: EvalSettings, plan: Plan, output_dir: Path, seed: int, given: Mapping[str, Any],
               url: str, key: str | None = None, system: str | None = None, *, bar: Bar = no_bar) -> dict[str, Any]:
    """Answer and score the plan (and lm-eval's tasks) with the server at `url`, write the run; returns the
    summary."""
    started = time.perf_counter()
    config = eval_generation(GenerationConfig(), dict(given))
    target = RemoteTarget(url, key, settings.served_model)
    target.model = resolve_remote_model(target)
    outcome = answer_remote(target, plan, config, settings.concurrency, system, bar)
    if settings.lm_eval_tasks:
        run_tasks(outcome, target.url, target.model, settings, key)
    about = {"name": target.model, "url": target.url, "backend": "remote"}
    return finish_run(output_dir, outcome, about, config, settings.recorded(seed, url), 0.0, started)
