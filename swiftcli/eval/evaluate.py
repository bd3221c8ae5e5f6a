"""One evaluation run: datasets -> one batch of answers -> scores -> the rows and summary a run directory holds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from swiftcli import __version__
from swiftcli.errors import InputError, UsageError
from swiftcli.eval.datasets import MULTIPLE_CHOICE, EvalDataset, EvalItem, dataset_names, load_dataset
from swiftcli.eval.runner import Generated
from swiftcli.eval.scoring import score_dataset

LOGLIKELIHOOD = "loglikelihood"
GENERATE = "generate"
MC_METHODS = (LOGLIKELIHOOD, GENERATE)


def load_datasets(
    paths: Sequence[str | Path],
    kind: str | None = None,
    few_shot: int = 0,
    limit: int | None = None,
    seed: int = 0,
) -> list[EvalDataset]:
    """Read every file up front, so bad data fails before an engine starts."""
    if not paths:
        raise UsageError("give at least one --eval-dataset FILE")
    if few_shot < 0:
        raise UsageError("--eval-few-shot must be 0 or more")
    if limit is not None and limit < 1:
        raise UsageError("--eval-limit must be at least 1")
    for path in map(Path, paths):
        if not path.is_file():
            what = "is a folder, not a file" if path.is_dir() else "does not exist"
            raise InputError(f"--eval-dataset {path} {what}", "check the path (and the current directory)")
    return [
        load_dataset(p, name, kind, few_shot, limit, seed) for p, name in zip(paths, dataset_names(paths), strict=True)
    ]


@dataclass
class EvalOutcome:
    rows: list[dict[str, Any]]
    datasets: list[dict[str, Any]]
    generate_s: float
    prompt_tokens: int
    output_tokens: int

    def fold(self, rows: list[dict[str, Any]], entries: list[dict[str, Any]], seconds: float) -> None:
        """Add results scored elsewhere (lm-eval's tasks) to this run."""
        self.rows += rows
        self.datasets += entries
        self.generate_s += seconds


Answer = Callable[[list[EvalItem]], Generated]


@dataclass(frozen=True)
class Plan:
    """Which rows are answered by generating and which by loglikelihood, decided once; every path (one model, a
    checkpoint of a sweep, a server) answers the same two lists and is scored by `outcome`."""

    datasets: tuple[EvalDataset, ...]
    mc_method: str = LOGLIKELIHOOD
    zh_tokenizer: str = "char"

    def by_loglikelihood(self, dataset: EvalDataset) -> bool:
        return dataset.kind == MULTIPLE_CHOICE and self.mc_method == LOGLIKELIHOOD

    def items(self, by_loglikelihood: bool) -> list[EvalItem]:
        return [item for d in self.datasets if self.by_loglikelihood(d) == by_loglikelihood for item in d.items]

    @property
    def to_generate(self) -> list[EvalItem]:
        return self.items(False)

    @property
    def to_score(self) -> list[EvalItem]:
        return self.items(True)

    def answer(self, generate: Answer, score: Answer | None) -> EvalOutcome:
        """Run `generate` on the rows to generate and `score` on the rows to score (each once, skipped when
        empty), then score every dataset."""
        generated = generate(self.to_generate) if self.to_generate else Generated([], 0.0)
        if self.to_score and score is None:
            raise ValueError("this plan scores multiple choice by loglikelihood, and no scorer was given")
        scored = score(self.to_score) if self.to_score and score is not None else Generated([], 0.0)
        return self.outcome(generated, scored)

    def outcome(self, generated: Generated, scored: Generated) -> EvalOutcome:
        """Score answers given in `to_generate` and `to_score` order."""
        queues = {False: iter(generated.predictions), True: iter(scored.predictions)}
        rows: list[dict[str, Any]] = []
        entries: list[dict[str, Any]] = []
        for dataset in self.datasets:
            by_loglikelihood = self.by_loglikelihood(dataset)
            predictions = [next(queues[by_loglikelihood]) for _ in dataset.items]
            dataset_rows, entry = score_dataset(dataset, predictions, self.zh_tokenizer, by_loglikelihood)
            rows += dataset_rows
            entries.append(entry)
        every = [*generated.predictions, *scored.predictions]
        return EvalOutcome(rows, entries, generated.seconds + scored.seconds,
                           sum(p.prompt_tokens for p in every), sum(p.output_tokens for p in every))


def evaluate(
    datasets: Sequence[EvalDataset], generate: Answer, zh_tokenizer: str = "char", score: Answer | None = None
) -> EvalOutcome:
    """Answer the items of all datasets in one call of `generate` (multiple-choice items in one call of `score`,
    by loglikelihood, when it is given), then score each dataset."""
    return Plan(tuple(datasets), LOGLIKELIHOOD if score is not None else GENERATE, zh_tokenizer).answer(
        generate, score)


def build_summary(
    outcome: EvalOutcome,
    model: dict[str, Any],
    generation: dict[str, Any],
    settings: dict[str, Any],
    load_s: float,
    total_s: float,
) -> dict[str, Any]:
    done = sum(d["ok"] for d in outcome.datasets)
    seconds = outcome.generate_s or 1e-9
    return {
        "swiftcli_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model,
        "settings": settings,
        "generation": generation,
        "datasets": outcome.datasets,
        "counts": {
            "scored": sum(d["scored"] for d in outcome.datasets),
            "ok": done,
            "failed": sum(d["failed"] for d in outcome.datasets),
        },
        "tokens": {"prompt": outcome.prompt_tokens, "output": outcome.output_tokens},
        "timings": {
            "load_s": round(load_s, 3),
            "generate_s": round(outcome.generate_s, 3),
            "total_s": round(total_s, 3),
            "samples_per_s": round(done / seconds, 3),
            "output_tokens_per_s": round(outcome.output_tokens / seconds, 2),
        },
    }
