"""One evaluation run: datasets -> one batch of answers -> scores -> the rows and summary a run directory holds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from swiftcli.eval.datasets import MULTIPLE_CHOICE, EvalDataset, EvalItem, dataset_names, load_dataset
from swiftcli.eval.runner import Generated
from swiftcli.eval.scoring import score_dataset


def load_datasets(
    paths: Sequence[str | Path],
    kind: str | None = None,
    few_shot: int = 0,
    limit: int | None = None,
    seed: int = 0,
) -> list[EvalDataset]:
    """Read every file up front, so bad data fails before an engine starts."""
    from swiftcli.errors import UsageError

    if not paths:
        raise UsageError("give at least one --eval_dataset FILE")
    if few_shot < 0:
        raise UsageError("--eval_few_shot must be 0 or more")
    if limit is not None and limit < 1:
        raise UsageError("--eval_limit must be at least 1")
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


Answer = Callable[[list[EvalItem]], Generated]


def evaluate(
    datasets: Sequence[EvalDataset], generate: Answer, zh_tokenizer: str = "char", score: Answer | None = None
) -> EvalOutcome:
    """Answer the items of all datasets in one call of `generate` (multiple-choice items in one call of `score`,
    by loglikelihood, when it is given), then score each dataset."""

    def by_score(dataset: EvalDataset) -> bool:
        return score is not None and dataset.kind == MULTIPLE_CHOICE

    answered: list[Generated] = []
    for use_score, answer in ((False, generate), (True, score)):
        items = [item for d in datasets if by_score(d) == use_score for item in d.items]
        answered.append(answer(items) if items and answer is not None else Generated([], 0.0))
    queues = [iter(g.predictions) for g in answered]
    rows: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    for dataset in datasets:
        queue = queues[by_score(dataset)]
        predictions = [next(queue) for _ in dataset.items]
        dataset_rows, entry = score_dataset(dataset, predictions, zh_tokenizer)
        rows += dataset_rows
        entries.append(entry)
    every = [p for g in answered for p in g.predictions]
    return EvalOutcome(
        rows,
        entries,
        sum(g.seconds for g in answered),
        sum(p.prompt_tokens for p in every),
        sum(p.output_tokens for p in every),
    )


def build_summary(
    outcome: EvalOutcome,
    model: dict[str, Any],
    generation: dict[str, Any],
    settings: dict[str, Any],
    load_s: float,
    total_s: float,
) -> dict[str, Any]:
    from swiftcli import __version__

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
