"""Eval settings as one frozen dataclass, the plan that decides each dataset's scoring method once, and the
capability check that refuses (never silently switches) a method an engine cannot do. Fast: no model."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from swiftcli.engines import BACKENDS, register_backend
from swiftcli.engines.base import EngineCapabilities, EngineRequest, RequestResult
from swiftcli.errors import UsageError
from swiftcli.eval.datasets import EvalItem
from swiftcli.eval.engine_support import backend_can, check_can_score
from swiftcli.eval.evaluate import load_datasets
from swiftcli.eval.runner import Generated, Prediction
from swiftcli.eval.settings import EvalSettings, check_writable

MC = "question,A,B,answer\nIs fire hot?,yes,no,A\nIs ice hot?,yes,no,B\n"
QA = '{"query": "Say hi", "response": "hi"}\n'


class PlainEngine:
    """A backend that declares no capabilities: plain generation only."""

    backend = "plain-eval-test"

    def stream(self, requests: Sequence[EngineRequest]) -> Iterator[RequestResult]:
        raise AssertionError("never started")


class ScoringEngine(PlainEngine):
    """A user backend that opts in to prompt logprobs by declaring them."""

    capabilities = EngineCapabilities(prompt_logprobs=True)


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    (tmp_path / "mc.csv").write_text(MC)
    (tmp_path / "qa.jsonl").write_text(QA)
    return [tmp_path / "mc.csv", tmp_path / "qa.jsonl"]


def test_settings_are_frozen_and_checked_when_made():
    settings = EvalSettings(datasets=["a.csv"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.limit = 3  # type: ignore[misc]
    assert dataclasses.replace(settings, limit=3).limit == 3 and settings.limit is None
    for bad, said in (({"mc_method": "letters"}, "--eval-mc-method"), ({"limit": 0}, "--eval-limit"),
                      ({"kind": "essay"}, "--eval-type"), ({"zh_tokenizer": "words"}, "--eval-zh-tokenizer")):
        with pytest.raises(UsageError, match=said):
            EvalSettings(**bad)  # type: ignore[arg-type]
    recorded = EvalSettings(lm_eval_tasks="a, b").recorded(7, "http://h/v1")
    assert recorded["lm_eval_tasks"] == ["a", "b"] and recorded["seed"] == 7 and "api_key" not in recorded


def test_the_plan_decides_each_dataset_method_once(files):
    datasets = load_datasets(files)
    by_ll = EvalSettings(datasets=[str(f) for f in files]).plan(datasets)
    assert [i.dataset for i in by_ll.to_score] == ["mc", "mc"] and [i.dataset for i in by_ll.to_generate] == ["qa"]
    by_letter = EvalSettings(mc_method="generate").plan(datasets)
    assert by_letter.to_score == [] and len(by_letter.to_generate) == 3

    def generate(items: list[EvalItem]) -> Generated:
        return Generated([Prediction("The answer is A." if i.choices else "hi") for i in items], 1.0)

    def score(items: list[EvalItem]) -> Generated:
        return Generated([Prediction(i.choices[0], loglikelihoods=[-1.0, -2.0]) for i in items], 2.0)

    outcome = by_ll.answer(generate, score)
    mc, qa = outcome.datasets
    assert mc["metrics"] == {"accuracy": 50.0, "accuracy_norm": 50.0} and "loglikelihood" in mc["method"]["accuracy"]
    assert qa["metrics"]["exact_match"] == 100.0 and outcome.generate_s == 3.0
    letters = by_letter.answer(generate, None).datasets[0]
    assert letters["metrics"] == {"accuracy": 50.0, "no_answer_found": 0.0}
    assert letters["method"] == {"accuracy": "option letter extracted from the answer"}
    with pytest.raises(ValueError, match="no scorer"):
        by_ll.answer(generate, None)


def test_a_backend_without_prompt_logprobs_is_refused_not_switched(files):
    register_backend("plain-eval-test", sync="test_eval_settings:PlainEngine")
    register_backend("scoring-eval-test", sync="test_eval_settings:ScoringEngine")
    try:
        plan = EvalSettings().plan(load_datasets(files))
        assert backend_can("vllm", "runtime_lora") and backend_can("pt", "prompt_logprobs")
        assert not backend_can("pt", "runtime_lora") and not backend_can("plain-eval-test", "prompt_logprobs")
        with pytest.raises(UsageError, match="cannot score multiple choice by loglikelihood") as refused:
            check_can_score("plain-eval-test", plan)
        assert "--eval-mc-method generate" in (refused.value.hint or "")
        check_can_score("plain-eval-test", EvalSettings(mc_method="generate").plan(plan.datasets))
        check_can_score("pt", plan)
        check_can_score("scoring-eval-test", plan)
    finally:
        BACKENDS.pop("plain-eval-test", None)
        BACKENDS.pop("scoring-eval-test", None)


def test_output_folder_is_tried_and_left_as_found(tmp_path):
    check_writable(tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(Exception, match="cannot be written: Not a directory"):
        check_writable(tmp_path / "file" / "run")
