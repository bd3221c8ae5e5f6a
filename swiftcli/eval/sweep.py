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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swiftcli.config.spec import EngineConfig, GenerationConfig, ModelSpec
from swiftcli.errors import UsageError
from swiftcli.eval.checkpoints import Checkpoint, engine_groups
from swiftcli.eval.datasets import EvalDataset, EvalItem
from swiftcli.eval.evaluate import build_summary, evaluate
from swiftcli.eval.report import SUMMARY, load_run, write_run
from swiftcli.eval.runner import Generated, Prediction

SWEEP = "sweep.json"
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
            "settings": {k: v for k, v in settings.items() if k != "concurrency"}}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_sweep(
    datasets: Sequence[EvalDataset],
    checkpoints: Sequence[Checkpoint],
    output_dir: Path,
    config: GenerationConfig,
    engine_config: EngineConfig,
    start_engine: EngineStarter,
    *,
    backend: str = "vllm",
    settings: dict[str, Any] | None = None,
    zh_tokenizer: str = "char",
    on_progress: Progress | None = None,
    on_message: Message | None = None,
) -> Sweep:
    """Evaluate `checkpoints` on `datasets` (greedy `config`), write every run and the sweep's files."""
    say = on_message or (lambda _m: None)
    settings = dict(settings or {})
    key = settings_key(datasets, config.to_dict(), settings)
    started = time.perf_counter()
    if (output_dir / SUMMARY).is_file():
        raise UsageError(f"{output_dir} holds a single-model run, not a sweep", "choose another --eval_output_dir")
    output_dir.mkdir(parents=True, exist_ok=True)
    done = {c.name: _resumable(output_dir / c.name, key) for c in checkpoints}
    points: dict[str, SweepPoint] = {}
    for ckpt in checkpoints:
        summary = done[ckpt.name]
        if summary is not None:
            say(f"{ckpt.name}: complete in an earlier run, reusing it")
            points[ckpt.name] = SweepPoint(ckpt.name, str(ckpt.path), ckpt.step, output_dir / ckpt.name, summary, True)
    todo = [c for c in checkpoints if c.name not in points]
    groups = engine_groups(todo, share_lora=backend == "vllm")
    for group in groups:
        say(_group_message(group))
        shared = group[0].is_lora and backend == "vllm"
        for point in _run_group(group, shared, datasets, config, engine_config, start_engine, output_dir,
                                {**settings, "sweep_key": key}, zh_tokenizer, on_progress):
            points[point.name] = point
    ordered = [points[c.name] for c in checkpoints]
    sweep = Sweep(output_dir, ordered, len(groups), time.perf_counter() - started)
    sweep.best = best_checkpoint(ordered)
    from swiftcli.eval.sweep_report import write_sweep_files

    sweep.files = write_sweep_files(sweep)
    return sweep


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
            "use another --eval_output_dir, or the same options as before to resume",
        )
    return summary


def _run_group(
    group: list[Checkpoint],
    shared: bool,
    datasets: Sequence[EvalDataset],
    config: GenerationConfig,
    engine_config: EngineConfig,
    start_engine: EngineStarter,
    output_dir: Path,
    settings: dict[str, Any],
    zh_tokenizer: str,
    on_progress: Progress | None,
) -> list[SweepPoint]:
    from dataclasses import replace

    from swiftcli.registry.templates import get_template

    first = group[0].spec
    if shared:
        from swiftcli.export.adapters import check_adapter

        base = replace(first, adapters=(), ckpt_dir=None)
        ranks = [check_adapter(c.path, base).rank for c in group]
        cfg = replace(engine_config, enable_lora=True, max_lora_rank=max(engine_config.max_lora_rank, *ranks),
                      max_loras=max(engine_config.max_loras, min(len(group), MAX_LORAS_PER_ENGINE)))
        spec = base
    else:
        cfg, spec = engine_config, first
    load_start = time.perf_counter()
    engine = start_engine(spec, cfg)
    try:
        load_s = time.perf_counter() - load_start
        adapters: list[str | None] = [None] * len(group)
        if shared:
            for i, ckpt in enumerate(group):
                adapters[i] = f"sweep-{i}-{ckpt.name}"
                engine.add_lora(adapters[i], str(ckpt.path))
        template = get_template(spec.template_type, engine.hf_tokenizer, spec.default_system)
        items = [item for d in datasets for item in d.items]
        generated = generate_interleaved(engine, template, items, config, adapters, on_progress)
    finally:
        engine.close()
    points = []
    for ckpt, result in zip(group, generated, strict=True):
        outcome = evaluate(datasets, lambda _items, r=result: r, zh_tokenizer)  # type: ignore[misc]
        about = {"name": ckpt.name, "model_dir": str(ckpt.spec.model_dir), "ckpt_dir": str(ckpt.path),
                 "step": ckpt.step, "template": ckpt.spec.template_type, "backend": getattr(engine, "backend", None),
                 "shared_engine": shared}
        summary = build_summary(outcome, about, config.to_dict(), settings, load_s, load_s + result.seconds)
        run_dir = output_dir / ckpt.name
        write_run(run_dir, outcome.rows, summary)
        points.append(SweepPoint(ckpt.name, str(ckpt.path), ckpt.step, run_dir, summary))
    return points


def generate_interleaved(
    engine: Any,
    template: Any,
    items: Sequence[EvalItem],
    config: GenerationConfig,
    adapters: Sequence[str | None],
    on_progress: Progress | None = None,
) -> list[Generated]:
    """Every item once per adapter, all in one batch (item-major, so the engine mixes adapters in each step);
    returns one Generated per adapter, in order. The seconds are the batch's, shared by all."""
    from swiftcli.engines.base import check_context_length, generate_all
    from swiftcli.errors import SwiftError
    from swiftcli.generation.core import encode_request

    progress = on_progress or (lambda _n: None)
    predictions: list[list[Prediction | None]] = [[None] * len(items) for _ in adapters]
    requests = []
    where: dict[str, tuple[int, int]] = {}
    for i, item in enumerate(items):
        for a, adapter in enumerate(adapters):
            if item.error is not None:
                predictions[a][i] = Prediction(error=item.error)
                progress(1)
                continue
            try:
                request = encode_request(template, item.request(), config, adapter)
                check_context_length(len(request.prompt_ids), config.max_new_tokens, engine.max_model_len)
            except SwiftError as exc:
                predictions[a][i] = Prediction(error=str(exc))
                progress(1)
                continue
            where[request.request_id] = (a, i)
            requests.append(request)

    def finished(state: Any) -> None:
        a, i = where[state.request_id]
        out = state.outputs[0]
        predictions[a][i] = Prediction(out.text, state.prompt_tokens, state.output_tokens, out.finish_reason)
        progress(1)

    start = time.perf_counter()
    if requests:
        generate_all(engine, requests, finished)
    seconds = time.perf_counter() - start
    return [Generated([p if p is not None else Prediction(error="no answer") for p in row], seconds)
            for row in predictions]


def best_checkpoint(points: Sequence[SweepPoint]) -> str | None:
    """The checkpoint with the highest mean main metric; on a tie the earliest (fewer steps, same quality)."""
    best: tuple[float, str] | None = None
    for point in points:
        score = point.score()
        if score is not None and (best is None or score > best[0]):
            best = (score, point.name)
    return best[1] if best else None
