"""Predictions -> per-sample rows (prompt, prediction, reference, scores) and per-dataset metrics (0-100)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from swiftcli.eval.datasets import GENERATION, GSM8K, MULTIPLE_CHOICE, EvalDataset, EvalItem
from swiftcli.eval.extract import extract_choice, extract_number, numbers_equal, parse_number
from swiftcli.eval.loglikelihood import contexts
from swiftcli.eval.metrics import TextScorer, mean
from swiftcli.eval.runner import Prediction

# The metric each kind is judged by first (shown first, and used to count right/wrong in `compare`).
MAIN_METRIC = {GENERATION: "rouge_l", MULTIPLE_CHOICE: "accuracy", GSM8K: "accuracy"}


Scored = dict[int, dict[str, Any]]


def score_dataset(
    dataset: EvalDataset, predictions: Sequence[Prediction], zh_tokenizer: str = "char",
    by_loglikelihood: bool | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows for samples.jsonl and the dataset's entry in summary.json; metrics cover the rows that got an answer.

    `by_loglikelihood` says how multiple choice was answered (None: from the predictions), so that each metric's
    method is recorded as it was computed."""
    answered = [
        (item, p) for item, p in zip(dataset.items, predictions, strict=True) if p.error is None and p.text is not None
    ]
    if by_loglikelihood is None:
        by_loglikelihood = any(p.loglikelihoods is not None for _, p in answered)
    if dataset.kind == GENERATION:
        scored, metrics, method = _score_generation(answered, zh_tokenizer)
    elif by_loglikelihood:
        scored, metrics, method = _score_loglikelihood(answered)
    else:
        scored, metrics, method = _score_extracted(dataset.kind, answered)
    rows = [_row(dataset, item, p, scored) for item, p in zip(dataset.items, predictions, strict=True)]
    return rows, _entry(dataset, rows, metrics, method)


def _score_generation(answered: list[tuple[EvalItem, Prediction]], zh_tokenizer: str
                      ) -> tuple[Scored, dict[str, float], dict[str, str]]:
    references = [item.reference or "" for item, _ in answered]
    scorer = TextScorer(references, zh_tokenizer)
    scored: Scored = {}
    for item, p in answered:
        scores = scorer.sample(p.text or "", item.reference or "")
        scored[item.index] = {"scores": scores, "correct": scores["exact_match"] == 100.0}
    per = [s["scores"] for s in scored.values()]
    metrics = {
        "rouge_l": mean([s["rouge_l"] for s in per]),
        "bleu": scorer.corpus_bleu([p.text or "" for _, p in answered], references),
        "exact_match": mean([s["exact_match"] for s in per]),
    }
    return scored, metrics, scorer.describe()


def _score_loglikelihood(answered: list[tuple[EvalItem, Prediction]]
                         ) -> tuple[Scored, dict[str, float], dict[str, str]]:
    scored = {item.index: loglikelihood_scores(item, p.loglikelihoods or []) for item, p in answered}
    metrics = {name: mean([s["scores"][name] for s in scored.values()]) for name in ("accuracy", "accuracy_norm")}
    return scored, metrics, dict(LOGLIKELIHOOD_METHOD)


def _score_extracted(kind: str, answered: list[tuple[EvalItem, Prediction]]
                     ) -> tuple[Scored, dict[str, float], dict[str, str]]:
    """Multiple choice by the option letter in a generated answer, or math by its final number."""
    scored: Scored = {}
    for item, p in answered:
        if kind == MULTIPLE_CHOICE:
            letter = extract_choice(p.text or "", item.letters, item.choices)
            extracted: str | None = letter
            correct = letter == item.reference
        else:
            number = extract_number(p.text or "")
            extracted = None if number is None else _plain(number)
            correct = numbers_equal(number, parse_number(item.reference or ""))
        scored[item.index] = {"extracted": extracted, "correct": correct,
                              "scores": {"accuracy": 100.0 if correct else 0.0}}
    metrics = {"accuracy": mean([s["scores"]["accuracy"] for s in scored.values()]),
               "no_answer_found": float(sum(s["extracted"] is None for s in scored.values()))}
    method = {"accuracy": "option letter extracted from the answer" if kind == MULTIPLE_CHOICE
              else "final number extracted from the answer, compared exactly"}
    return scored, metrics, method


def _row(dataset: EvalDataset, item: EvalItem, p: Prediction, scored: Scored) -> dict[str, Any]:
    row: dict[str, Any] = {
        "dataset": dataset.name,
        "index": item.index,
        "line": item.line,
        "kind": item.kind,
        "status": "ok" if item.index in scored else "failed",
        "prompt": item.query,
        "system": item.system,
        "history_turns": len(item.history),
        "prediction": p.text,
        "reference": item.reference,
    }
    row.update(scored.get(item.index, {"scores": {}, "correct": None}))
    row.update(prompt_tokens=p.prompt_tokens, output_tokens=p.output_tokens, finish_reason=p.finish_reason,
               error=p.error)
    row["scores"] = {k: round(v, 4) for k, v in row["scores"].items()}
    return row


def _entry(dataset: EvalDataset, rows: list[dict[str, Any]], metrics: dict[str, float], method: dict[str, str]
           ) -> dict[str, Any]:
    failed = sum(1 for r in rows if r["status"] == "failed")
    return {
        "name": dataset.name,
        "path": str(dataset.path),
        "sha256": dataset.sha256,
        "kind": dataset.kind,
        "rows": dataset.rows,
        "few_shot": len(dataset.few_shot_lines),
        "few_shot_lines": dataset.few_shot_lines,
        "scored": len(rows),
        "ok": len(rows) - failed,
        "failed": failed,
        "main_metric": MAIN_METRIC[dataset.kind],
        "metrics": {k: round(v, 4) for k, v in metrics.items()},
        "method": method,
    }


LOGLIKELIHOOD_METHOD = {
    "accuracy": "loglikelihood: the option whose text the model finds likeliest after the question (lm-eval acc)",
    "accuracy_norm": "loglikelihood per character of the option (lm-eval acc_norm)",
}


def loglikelihood_scores(item: Any, loglikelihoods: list[float]) -> dict[str, Any]:
    """A row's picks by raw and by length-normalised loglikelihood, as lm-evaluation-harness computes them."""
    n = len(loglikelihoods)
    best = max(range(n), key=lambda i: loglikelihoods[i])
    best_norm = max(range(n), key=lambda i: loglikelihoods[i] / max(len(item.choices[i]), 1))
    correct = item.letters[best] == item.reference
    return {
        "prompt": contexts(item)[0],
        "extracted": item.letters[best],
        "correct": correct,
        "loglikelihoods": [round(v, 6) for v in loglikelihoods],
        "scores": {"accuracy": 100.0 if correct else 0.0,
                   "accuracy_norm": 100.0 if item.letters[best_norm] == item.reference else 0.0},
    }


def _plain(number: Any) -> str:
    return format(number.normalize(), "f")
