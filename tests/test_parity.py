"""`swiftcli check`: greedy vLLM vs transformers on the embedded model and on a real peft checkpoint (adapter
on vLLM, adapter in peft, the merge on vLLM); a deliberately broken adapter fails it. Unit tests of the
comparison itself use hand-made traces."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
from engine_lending import SharedEngine, start_with
from typer.testing import CliRunner

from swiftcli.cli.main import app
from swiftcli.eval.parity import Trace, compare_traces


def invoke(args: list[str]) -> Any:
    return CliRunner().invoke(app, args, env={"COLUMNS": "200"})


def trace(tokens: list[int], logprobs: list[float], tops: list[dict[int, float]] | None = None) -> Trace:
    return Trace(tokens, logprobs, tops or [{t: lp} for t, lp in zip(tokens, logprobs, strict=True)])


def test_identical_traces_match():
    ref = trace([5, 6, 7], [-0.1, -0.2, -0.3])
    result = compare_traces(ref, trace([5, 6, 7], [-0.1001, -0.2, -0.3]), "p", 0.1, 0.05)
    assert (result.verdict, result.agreed, result.first_divergence) == ("match", 3, None)
    assert result.max_logprob_gap == pytest.approx(1e-4)


def test_a_close_call_is_a_near_tie_and_a_sure_one_a_divergence():
    ref = trace([5, 6], [-0.2, -1.86], [{5: -0.2}, {6: -1.86, 9: -1.90}])
    near = compare_traces(ref, trace([5, 9], [-0.2, -1.87], [{5: -0.2}, {9: -1.87, 6: -1.89}]), "p", 0.1, 0.05)
    assert (near.verdict, near.first_divergence, near.ok) == ("near-tie", 1, True)
    assert near.margin == pytest.approx(0.04)
    sure = trace([5, 6], [-0.2, -0.01], [{5: -0.2}, {6: -0.01, 9: -5.0}])
    far = compare_traces(sure, trace([5, 9], [-0.2, -0.5], [{5: -0.2}, {9: -0.5, 6: -1.5}]), "p", 0.1, 0.05)
    assert (far.verdict, far.ok) == ("diverges", False) and far.margin == pytest.approx(4.99)
    unranked = compare_traces(sure, trace([5, 8], [-0.2, -0.1], [{5: -0.2}, {8: -0.1}]), "p", 0.1, 0.05)
    assert unranked.verdict == "diverges" and unranked.margin is None


def test_gaps_and_nan_fail():
    ref = trace([5, 6], [-0.2, -0.3])
    assert compare_traces(ref, trace([5, 6], [-0.2, -0.9]), "p", 0.1, 0.05).verdict == "logprob-gap"
    assert compare_traces(ref, trace([5, 6], [-0.2, math.nan]), "p", 0.1, 0.05).verdict == "non-finite"
    assert compare_traces(ref, trace([5], [-0.2]), "p", 0.1, 0.05).first_divergence == 1


def test_bad_options_fail_before_loading(tmp_path):
    result = invoke(["check", "--merge_lora", "true"])
    assert result.exit_code == 2 and "drop --merge-lora" in result.output
    result = invoke(["check", "--prompts_file", str(tmp_path / "none.txt")])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = invoke(["check", "--infer_backend", "pt"])
    assert result.exit_code == 2 and "runs both backends" in result.output


@pytest.fixture()
def engines(vllm_engine, embedded_spec, monkeypatch):
    """The session engine (float32, LoRA on) for the base model; a real new engine for anything else (the merge)."""
    from swiftcli.engines import create_engine

    started: list[Any] = []

    def start(spec, config, backend, asynchronous=False):
        started.append((spec, config))
        if spec.model_dir == embedded_spec.model_dir and config.dtype in (None, "float32"):
            return SharedEngine(vllm_engine)
        return create_engine(spec, config, backend)

    start_with(monkeypatch, start)
    return started


@pytest.mark.slow
def test_check_passes_on_the_embedded_model(engines, tmp_path):
    out = tmp_path / "report.json"
    result = invoke(["check", "--max_new_tokens", "24", "--output_json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    (side,) = report["comparisons"]
    assert (side["reference"], side["candidate"], report["dtype"]) == ("transformers", "vllm", "float32")
    assert len(side["prompts"]) == 4 and all(p["verdict"] in ("match", "near-tie") for p in side["prompts"])
    france = side["prompts"][0]
    assert france["verdict"] == "match" and france["candidate_text"].startswith("The capital of France is Paris")
    assert max(p["max_logprob_gap"] for p in side["prompts"]) < 0.05
    assert "PASS" in result.output and "vllm vs transformers" in result.output


@pytest.mark.slow
def test_check_compares_adapter_and_merge(engines, lora_run, tmp_path):
    out = tmp_path / "report.json"
    result = invoke(["check", "--ckpt_dir", str(lora_run / "checkpoint-20"), "--max_new_tokens", "24",
                     "--prompt", "What is the capital of France?", "--prompt", "List three fruits.",
                     "--output_json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert [c["candidate"] for c in report["comparisons"]] == ["vllm+lora", "vllm merged"]
    assert all(c["reference"] == "transformers+lora" for c in report["comparisons"])
    for side in report["comparisons"]:
        assert all(p["verdict"] in ("match", "near-tie") for p in side["prompts"]), side
    # The merge ran on an engine of its own (full weights, no LoRA) in float32.
    merged_spec, merged_config = engines[-1]
    assert merged_spec.adapters == () and not merged_config.enable_lora and merged_config.dtype == "float32"
    # How deploy would serve it against its training run (sft_args.json): the same.
    (training,) = report["train_serve"]
    assert training["checkpoint"] == "checkpoint-20" and training["ok"], training
    assert [i["aspect"] for i in training["items"]] == ["prompt", "generation_config", "adapter"]
    assert "train/serve checkpoint-20: serving matches training: prompt same" in result.output


@pytest.mark.slow
def test_check_prints_how_serving_differs_from_training(engines, embedded_spec, tmp_path):
    from checkpoints import make_lora_adapter

    ckpt = make_lora_adapter(embedded_spec.model_dir, tmp_path / "checkpoint-10", args_file="args.json",
                             extra_args={"system": "You are a pirate."})
    result = invoke(["check", "--ckpt_dir", str(ckpt), "--system", "Be brief.", "--max_new_tokens", "4",
                     "--prompt", "List three fruits.", "--check_merged", "false"])
    assert result.exit_code == 0, result.output  # the engines agree; the difference is reported, not a failure
    (line,) = [line for line in result.output.splitlines() if line.startswith("train/serve ")]
    assert line.startswith("train/serve checkpoint-10: prompt: system prompt differs: training (template smollm2, "
                           "system 'You are a pirate.')") and "system 'Be brief.'" in line


def _broken_adapter(good: Path, folder: Path) -> Path:
    """An adapter whose config and weights disagree: adapter_config.json names only q_proj (as after a hand edit
    or a mismatched copy) while the weights adapt q, k, v and o. peft applies only q_proj; vLLM loads every
    LoRA weight in the file: "the adapter behaves differently under vLLM"."""
    shutil.copytree(good, folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "target_modules": ["q_proj"]}))
    return folder


@pytest.mark.slow
def test_check_fails_on_a_broken_adapter(engines, lora_run, tmp_path):
    broken = _broken_adapter(lora_run / "checkpoint-30", tmp_path / "v0-broken" / "checkpoint-30")
    out = tmp_path / "report.json"
    result = invoke(["check", "--ckpt_dir", str(broken), "--max_new_tokens", "24", "--check_merged", "false",
                     "--output_json", str(out)])
    assert result.exit_code == 1, result.output
    report = json.loads(out.read_text())
    assert not report["ok"]
    (side,) = report["comparisons"]
    failing = [p for p in side["prompts"] if p["verdict"] not in ("match", "near-tie")]
    assert failing, side
    assert "FAIL" in result.output
