"""Evaluate every checkpoint of a training run in one go.

LoRA checkpoints of one base model are loaded as adapters into one engine, and the requests of all of them go
in as one batch, so the engine interleaves them: one engine start instead of one per checkpoint. Full-weight
checkpoints (and any checkpoint on a backend without adapter switching) get an engine each, one after another.

On disk a sweep is a folder with one ordinary run per checkpoint (`<name>/summary.json`, `samples.jsonl`, so
`eval compare` works on any two of them), plus `sweep.json`, `sweep.png` and `report.html`. Running the same
command again resumes: checkpoints whose run is complete and was made with the same settings are read back,
not evaluated again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from swiftcli.config.spec import EngineConfig, GenerationConfig, ModelSpec
from swiftcli.errors import UsageError
from swiftcli.eval.checkpoints import Checkpoint, engine_groups
from swiftcli.eval.datasets import EvalDataset
from swiftcli.eval.engine_support import backend_can, check_can_score
from swiftcli.eval.evaluate import EvalOutcome, Plan, build_summary
from swiftcli.eval.report import SUMMARY, load_run, write_run
from swiftcli.eval.run import answer_on_engine
from swiftcli.eval.runner import generate_adapters
from swiftcli.eval.sweep_report import write_sweep_files
from swiftcli.export.adapters import check_adapter
from swiftcli.registry.templates import get_template

SWEEP = "sweep.json"
# Part of every run's resume key. Sweeps made before 2 scored multiple choice by the generated letter whatever
# their settings said; their runs must not be taken for loglikelihood-scored ones.
SCORING = 2
EngineStarter = Callable[[ModelSpec, EngineConfig], Any]
Progress = Callable[[int], None]
Message = Callable[[str], None]
# Adapters held in the engine at once; more are swapped in and out by vLLM's LRU cache.
MAX_LORAS_PER_ENGINE = 4


@dataclass
class SweepPoint:
    """One checkpoint's result: where its run is, its step, its summary, and whether it was resumed."""

    name: str
    path: str
    step: int | None
    run_dir: Path
    summary: dict[str, Any]
    resumed: bool = False

    def score(self) -> float | None:
        """The mean of each dataset's main metric: one number to rank checkpoints by."""
        values = [d["metrics"].get(d.get("main_metric")) for d in self.summary["datasets"]]
        numbers = [v for v in values if isinstance(v, (int, float))]
        return sum(numbers) / len(numbers) if numbers else None


@dataclass
class Sweep:
    output_dir: Path
    points: list[SweepPoint]
    engines_started: int
    seconds: float
    best: str | None = None
    files: dict[str, str] = field(default_factory=dict)


def settings_key(datasets: Sequence[EvalDataset], generation: dict[str, Any], settings: dict[str, Any]) -> str:
    """Identity of what a checkpoint's run depends on besides the checkpoint: resuming needs the same one."""
    data = {"datasets": [[d.name, d.sha256, len(d.items)] for d in datasets], "generation": generation,
            "settings": {k: v for k, v in settings.items() if k != "concurrency"}, "scoring": SCORING}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_sweep(
    plan: Plan,
    checkpoints: Sequence[Checkpoint],
    output_dir: Path,
    config: GenerationConfig,
    engine_config: EngineConfig,
    start_engine: EngineStarter,
    *,
    backend: str = "vllm",
    settings: dict[str, Any] | None = None,
    on_progress: Progress | None = None,
    on_message: Message | None = None,
) -> Sweep:
    """Evaluate `checkpoints` on the plan's datasets (greedy `config`), scored exactly as a single model's run
    (`answer_on_engine`), and write every run and the sweep's files. `settings` is what summary.json records."""
    say = on_message or (lambda _m: None)
    settings = dict(settings or {})
    key = settings_key(plan.datasets, config.to_dict(), settings)
    started = time.perf_counter()
    if (output_dir / SUMMARY).is_file():
        raise UsageError(f"{output_dir} holds a single-model run, not a sweep", "choose another --eval-output-dir")
    check_can_score(backend, plan)
    output_dir.mkdir(parents=True, exist_ok=True)
    points = _resumed(checkpoints, output_dir, key, say)
    todo = [c for c in checkpoints if c.name not in points]
    shares = backend_can(backend, "runtime_lora")
    groups = engine_groups(todo, share_lora=shares)
    for group in groups:
        say(_group_message(group))
        run = GroupRun(plan, config, {**settings, "sweep_key": key}, output_dir, on_progress)
        for point in run.evaluate(group, group[0].is_lora and shares, engine_config, start_engine):
            points[point.name] = point
    ordered = [points[c.name] for c in checkpoints]
    sweep = Sweep(output_dir, ordered, len(groups), time.perf_counter() - started)
    sweep.best = best_checkpoint(ordered)
    sweep.files = write_sweep_files(sweep)
    return sweep


def _resumed(checkpoints: Sequence[Checkpoint], output_dir: Path, key: str, say: Message) -> dict[str, SweepPoint]:
    """Checkpoints whose run an earlier sweep with the same settings completed."""
    done = {c.name: _resumable(output_dir / c.name, key) for c in checkpoints}
    points: dict[str, SweepPoint] = {}
    for ckpt in checkpoints:
        summary = done[ckpt.name]
        if summary is not None:
            say(f"{ckpt.name}: complete in an earlier run, reusing it")
            points[ckpt.name] = SweepPoint(ckpt.name, str(ckpt.path), ckpt.step, output_dir / ckpt.name, summary, True)
    return points


def _group_message(group: list[Checkpoint]) -> str:
    if len(group) > 1 or group[0].is_lora:
        names = ", ".join(c.name for c in group)
        return f"one engine for {len(group)} LoRA checkpoint(s) of {group[0].spec.name}: {names}"
    return f"one engine for {group[0].name} (full weights)"


def _resumable(run_dir: Path, key: str) -> dict[str, Any] | None:
    """The summary of a complete earlier run with the same settings; None when there is none; an error when
    the folder holds a run made with other settings (mixing them would make the curve meaningless)."""
    if not (run_dir / SUMMARY).is_file():
        return None
    summary = load_run(run_dir).summary
    if summary.get("settings", {}).get("sweep_key") != key:
        raise UsageError(
            f"{run_dir} holds a run made with other datasets or settings",
            "use another --eval-output-dir, or the same options as before to resume",
        )
    return summary


@dataclass(frozen=True)
class GroupRun:
    """What every engine of a sweep does the same way: the plan, the sampling, what summary.json records."""

    plan: Plan
    config: GenerationConfig
    settings: dict[str, Any]
    output_dir: Path
    on_progress: Progress | None

    def evaluate(self, group: list[Checkpoint], shared: bool, engine_config: EngineConfig,
                 start_engine: EngineStarter) -> list[SweepPoint]:
        """Start one engine for the group (the base with every adapter when `shared`), answer, write the runs."""
        spec, cfg = _shared_engine(group, engine_config) if shared else (group[0].spec, engine_config)
        load_start = time.perf_counter()
        engine = start_engine(spec, cfg)
        try:
            load_s = time.perf_counter() - load_start
            adapters: list[str | None] = [None] * len(group)
            if shared:
                for i, ckpt in enumerate(group):
                    adapters[i] = f"sweep-{i}-{ckpt.name}"
                    engine.add_lora(adapters[i], str(ckpt.path))
            outcomes = self._answer(engine, get_template(spec.template_type, engine.hf_tokenizer,
                                                         spec.default_system), adapters)
        finally:
            engine.close()
        return [self._write(ckpt, outcome, shared, engine.backend, load_s)
                for ckpt, outcome in zip(group, outcomes, strict=True)]

    def _answer(self, engine: Any, template: Any, adapters: list[str | None]) -> list[EvalOutcome]:
        """Every checkpoint's generated answers in one batch (the engine mixes adapters in each step), then each
        checkpoint scored as a single run scores it."""
        progress = self.on_progress or (lambda _n: None)
        generated = generate_adapters(engine, template, self.plan.to_generate, self.config, adapters, progress)
        return [answer_on_engine(engine, template, self.plan, self.config, adapter=adapter, generated=answers,
                                 bar=lambda _total: nullcontext(progress))
                for adapter, answers in zip(adapters, generated, strict=True)]

    def _write(self, ckpt: Checkpoint, outcome: EvalOutcome, shared: bool, backend: str | None, load_s: float
               ) -> SweepPoint:
        about = {"name": ckpt.name, "model_dir": str(ckpt.spec.model_dir), "ckpt_dir": str(ckpt.path),
                 "step": ckpt.step, "template": ckpt.spec.template_type, "backend": backend, "shared_engine": shared}
        summary = build_summary(outcome, about, self.config.to_dict(), self.settings, load_s,
                                load_s + outcome.generate_s)
        run_dir = self.output_dir / ckpt.name
        write_run(run_dir, outcome.rows, summary)
        return SweepPoint(ckpt.name, str(ckpt.path), ckpt.step, run_dir, summary)


def _shared_engine(group: list[Checkpoint], engine_config: EngineConfig) -> tuple[ModelSpec, EngineConfig]:
    """The base model with LoRA on, room for the group's largest rank and up to MAX_LORAS_PER_ENGINE at once."""
    base = replace(group[0].spec, adapters=(), ckpt_dir=None)
    ranks = [check_adapter(c.path, base).rank for c in group]
    cfg = replace(engine_config, enable_lora=True, max_lora_rank=max(engine_config.max_lora_rank, *ranks),
                  max_loras=max(engine_config.max_loras, min(len(group), MAX_LORAS_PER_ENGINE)))
    return base, cfg


def best_checkpoint(points: Sequence[SweepPoint]) -> str | None:
    """The checkpoint with the highest mean main metric; on a tie the earliest (fewer steps, same quality)."""
    best: tuple[float, str] | None = None
    for point in points:
        score = point.score()
        if score is not None and (best is None or score > best[0]):
            best = (score, point.name)
    return best[1] if best else None
