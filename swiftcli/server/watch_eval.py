"""`deploy --watch DIR --eval_dataset FILE`: each checkpoint scored in the background, on the serving engine.

Scoring takes the one path a single `swiftcli eval` takes (`eval.run.answer_on_engine`: the same prompts,
greedy sampling, metrics and multiple-choice method), driven from a worker thread through `EngineBridge`, which
hands each request to the server's engine on the event loop. People come first: on an engine with priority
scheduling (vLLM, started here with scheduling_policy=priority) scoring requests ask for a lower priority
(`SCORING_PRIORITY`) and at most `PRIORITY_WINDOW` are in flight; on any other engine one at a time.

Each checkpoint's run is written as eval's sweep writes it (`<output>/<checkpoint>/summary.json`,
`samples.jsonl`, with the sweep's resume key), by default under DIR/eval. A restarted server reads a complete run
back instead of scoring again, and `swiftcli eval --ckpt_dir DIR --eval_dataset FILE --eval_output_dir DIR/eval`
with the same options resumes the same runs (and draws the sweep's chart and report).

The checkpoint table (GET /v1/checkpoints) gains, per row: `metrics` ({"dataset/metric": value}), `score` (the
mean of each dataset's main metric: what `best` ranks by), `main_metric` (what `score` is), `eval_status`
(pending, scoring, scored, failed; null for a checkpoint that is not loaded), `eval_error`, `eval_resumed` (read
back from an earlier run) and `best`. The model id `best` serves the loaded checkpoint with the highest score.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from swiftcli.config.commands import WatchEvalConfig
from swiftcli.config.spec import EngineConfig, GenerationConfig
from swiftcli.engines import backend_capabilities
from swiftcli.engines.base import EngineRequest, RequestResult, capabilities_of
from swiftcli.errors import EngineError, SwiftError, UsageError
from swiftcli.eval.evaluate import Plan, build_summary, load_datasets
from swiftcli.eval.report import SUMMARY, load_run, write_run
from swiftcli.eval.run import answer_on_engine
from swiftcli.eval.settings import EvalSettings, check_writable, eval_generation
from swiftcli.eval.sweep import SweepPoint, best_checkpoint, settings_key

logger = logging.getLogger("swiftcli.server")
BEST = "best"
EVAL_FOLDER = "eval"
# Lower runs first in vLLM; people's requests are 0.
SCORING_PRIORITY = 10
# Scoring requests in flight at once: a few where the scheduler puts people's requests first, else one.
PRIORITY_WINDOW = 4
PLAIN_WINDOW = 1
PENDING, SCORING, SCORED, FAILED = "pending", "scoring", "scored", "failed"


@dataclass(frozen=True)
class WatchScoring:
    """What every checkpoint is scored with, decided before the engine starts."""

    plan: Plan
    config: GenerationConfig
    settings: dict[str, Any]  # as summary.json records them, with the sweep's resume key
    output_dir: Path

    @property
    def key(self) -> str:
        return str(self.settings["sweep_key"])


def check_watch_eval(options: WatchEvalConfig, watch_dir: str | None) -> None:
    """--eval_dataset scores what --watch serves: refused without it."""
    if options.active and watch_dir is None:
        raise UsageError("--eval-dataset on deploy scores the checkpoints of --watch DIR",
                         "add --watch DIR, or run `swiftcli eval` for one model")


def prepare_scoring(options: WatchEvalConfig, watch_dir: Path, model_dir: Path, given: dict[str, Any]
                    ) -> WatchScoring:
    """Read the datasets and check the output folder (before any model loads); the sampling is eval's greedy
    one over the model's defaults and the options given, as `swiftcli eval` with the same options."""
    settings = EvalSettings(datasets=options.eval_dataset, limit=options.eval_limit,
                            mc_method=options.eval_mc_method)
    seed = given.get("seed") or 0
    datasets = load_datasets(settings.datasets or [], settings.kind, settings.few_shot, settings.limit, seed)
    output_dir = Path(options.eval_output_dir).expanduser() if options.eval_output_dir else watch_dir / EVAL_FOLDER
    if (output_dir / SUMMARY).is_file():
        raise UsageError(f"--eval-output-dir {output_dir} holds a single-model run, not a sweep",
                         "choose another --eval-output-dir")
    check_writable(output_dir)
    config = eval_generation(GenerationConfig.from_model_dir(model_dir), dict(given))
    plan = settings.plan(datasets)
    recorded = settings.recorded(seed, None)
    key = settings_key(plan.datasets, config.to_dict(), recorded)
    return WatchScoring(plan, config, {**recorded, "sweep_key": key}, output_dir.resolve())


def scoring_engine(engine: EngineConfig, backend: str | None) -> EngineConfig:
    """The engine config with priority scheduling on where the backend has it (and the user chose no policy)."""
    if not backend_capabilities(backend, asynchronous=True).priority_scheduling:
        return engine
    return replace(engine, engine_kwargs={"scheduling_policy": "priority", **engine.engine_kwargs})


class EngineBridge:
    """The server's AsyncEngine as the offline Engine eval's code drives, from a worker thread: each request runs
    on the server's event loop at `priority`, at most `window` at a time. `sent` counts the requests."""

    def __init__(self, engine: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.engine = engine
        self.loop = loop
        caps = capabilities_of(engine)
        self.priority = SCORING_PRIORITY if caps.priority_scheduling else 0
        self.window = PRIORITY_WINDOW if caps.priority_scheduling else PLAIN_WINDOW
        self.backend = engine.backend
        self.capabilities = replace(caps, final_results=False)
        self.spec = engine.spec
        self.hf_tokenizer = engine.hf_tokenizer
        self.generation_config = engine.generation_config
        self.max_model_len = engine.max_model_len
        self.sent = 0

    def stream(self, requests: Sequence[EngineRequest]) -> Iterator[RequestResult]:
        """Each request's final state as it finishes; an engine error is raised here (closing aborts the rest)."""
        results: queue.Queue[RequestResult | BaseException] = queue.Queue()
        future = asyncio.run_coroutine_threadsafe(self._drive(list(requests), results), self.loop)
        complete = False
        try:
            for _ in requests:
                item = results.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
            complete = True
        finally:
            if complete:
                future.result()  # every request has answered: the drive is ending
            else:
                future.cancel()

    async def _drive(self, requests: list[EngineRequest], results: queue.Queue[RequestResult | BaseException]
                     ) -> None:
        gate = asyncio.Semaphore(self.window)

        async def one(request: EngineRequest) -> None:
            async with gate:
                self.sent += 1
                last: RequestResult | None = None
                try:
                    async for state in self.engine.generate(replace(request, priority=self.priority)):
                        last = state
                except Exception as exc:  # noqa: BLE001 - handed to the scoring thread, which fails the checkpoint
                    results.put(exc)
                    return
                results.put(last if last is not None else EngineError("the engine returned no result"))

        await asyncio.gather(*(one(r) for r in requests))

    def abort(self, request_ids: Sequence[str]) -> None:
        pass  # closing `stream` cancels its requests

    def close(self) -> None:
        pass  # the server owns the engine


@dataclass
class ScoreState:
    """A loaded checkpoint's scoring: its status, and its summary once scored."""

    status: str = PENDING
    summary: dict[str, Any] | None = None
    error: str | None = None
    resumed: bool = False

    def metrics(self) -> dict[str, float]:
        datasets = self.summary["datasets"] if self.summary else []
        return {f"{d['name']}/{m}": v for d in datasets for m, v in d["metrics"].items()}

    def main_metric(self) -> str | None:
        if not self.summary:
            return None
        names = [f"{d['name']}/{d.get('main_metric')}" for d in self.summary["datasets"]]
        return names[0] if len(names) == 1 else f"mean of {', '.join(names)}"


class CheckpointScorer:
    """Scores the watcher's loaded checkpoints one after another (lowest step first) and keeps `best` pointing
    at the top one. `states` by checkpoint name; `bridge.sent` counts engine requests."""

    def __init__(self, scoring: WatchScoring, watcher: Any, poll_s: float = 1.0) -> None:
        self.scoring = scoring
        self.watcher = watcher
        self.poll_s = poll_s
        self.states: dict[str, ScoreState] = {}
        self.bridge: EngineBridge | None = None

    async def run(self, state: Any) -> None:
        while not state.ready:
            if state.load_error is not None:
                return
            await asyncio.sleep(0.2)
        self.bridge = EngineBridge(state.engine, asyncio.get_running_loop())
        refusal = self._refusal(state.engine)
        while True:
            name: str | None = None
            try:
                self.sync()
                name = self._next()
                if name is not None and refusal is not None:
                    self.states[name] = ScoreState(FAILED, error=refusal)
                elif name is not None:
                    await self._score(state, name)
                self.set_best(state)
            except Exception:  # noqa: BLE001 - one failed round must not end scoring
                logger.exception("scoring checkpoints failed once; retrying")
            if name is None:
                await asyncio.sleep(self.poll_s)

    def _refusal(self, engine: Any) -> str | None:
        if self.scoring.plan.to_score and not capabilities_of(engine).batched_prompt_logprobs:
            return ("multiple choice by loglikelihood cannot be scored while this engine serves (prompt logprobs "
                    "beside other requests: vLLM on CPU with LoRA); restart with --eval_mc_method generate")
        return None

    def sync(self) -> None:
        """A state for every loaded checkpoint (read back from an earlier run when there is one); none for those
        gone or not loaded."""
        loaded = {name: c for name, c in self.watcher.checkpoints.items() if c.loaded}
        for name in [n for n in self.states if n not in loaded]:
            del self.states[name]
        for name, ckpt in loaded.items():
            if name not in self.states:
                self.states[name] = self._earlier(name)
            ckpt.metrics = self.states[name].metrics()

    def _earlier(self, name: str) -> ScoreState:
        run_dir = self.scoring.output_dir / name
        if not (run_dir / SUMMARY).is_file():
            return ScoreState()
        try:
            summary = load_run(run_dir).summary
        except SwiftError as exc:
            reason = f"its earlier run cannot be read: {exc.message}"
            return ScoreState(FAILED, error=reason.replace(str(run_dir), name))
        if summary.get("settings", {}).get("sweep_key") != self.scoring.key:
            return ScoreState(FAILED, error="its earlier run was made with other datasets or settings; restart with "
                              "another --eval_output_dir")
        logger.info("checkpoint %s: scored in an earlier run, reusing it", name)
        return ScoreState(SCORED, summary, resumed=True)

    def _next(self) -> str | None:
        pending = [n for n, s in self.states.items() if s.status == PENDING]
        steps = {n: self.watcher.checkpoints[n].step for n in pending}
        return min(pending, key=lambda n: (steps[n] is None, steps[n] or 0, n)) if pending else None

    async def _score(self, state: Any, name: str) -> None:
        ckpt = self.watcher.checkpoints[name]
        current = self.states[name]
        current.status = SCORING
        scoring = self.scoring
        started = time.perf_counter()
        try:
            outcome = await asyncio.to_thread(answer_on_engine, self.bridge, state.template, scoring.plan,
                                              scoring.config, adapter=name)
        except Exception as exc:  # noqa: BLE001 - the checkpoint fails with its reason, serving goes on
            if self.states.get(name) is current:
                current.status, current.error = FAILED, _first_line(exc).replace(str(ckpt.path), name)
                logger.warning("scoring checkpoint %s failed: %s", name, current.error)
            return
        if self.states.get(name) is not current or not ckpt.loaded:
            return  # deleted while it was scored: nothing to record
        about = {"name": name, "model_dir": str(state.engine.spec.model_dir), "ckpt_dir": str(ckpt.path),
                 "step": ckpt.step, "template": state.engine.spec.template_type, "backend": state.engine.backend,
                 "shared_engine": True, "served": True}
        summary = build_summary(outcome, about, scoring.config.to_dict(), scoring.settings, 0.0,
                                time.perf_counter() - started)
        await asyncio.to_thread(write_run, scoring.output_dir / name, outcome.rows, summary)
        current.status, current.summary = SCORED, summary
        ckpt.metrics = current.metrics()
        logger.info("scored checkpoint %s", name)

    def best(self) -> str | None:
        points = [SweepPoint(name, "", self.watcher.checkpoints[name].step, self.scoring.output_dir / name,
                             s.summary) for name, s in self.states.items() if s.summary is not None]
        points.sort(key=lambda p: (p.step is None, p.step or 0, p.name))
        return best_checkpoint(points)

    def set_best(self, state: Any) -> None:
        best = self.best()
        if best is None:
            state.aliases.pop(BEST, None)
        else:
            state.aliases[BEST] = best

    def annotate(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The table's rows with each checkpoint's scoring (module docstring: the fields)."""
        best = self.best()
        for row in rows:
            current = self.states.get(row["id"])
            point = SweepPoint(row["id"], "", row["step"], Path(), current.summary) if current and \
                current.summary else None
            row.update({"eval_status": current.status if current else None,
                        "eval_error": current.error if current else None,
                        "eval_resumed": bool(current and current.resumed),
                        "score": point.score() if point else None,
                        "main_metric": current.main_metric() if current else None,
                        "best": row["id"] == best})
        return rows


def _first_line(exc: BaseException) -> str:
    message = exc.message if isinstance(exc, SwiftError) else str(exc)
    lines = message.strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
