"""lm-evaluation-harness against `swiftcli deploy`: the same scores as lm-eval's own transformers backend.

Local tasks only (tests/lm_eval_tasks: YAML + jsonl), so nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import SharedEngine

pytest.importorskip("lm_eval")

TASKS = Path(__file__).parent / "lm_eval_tasks"
MODEL = "smollm2-135m-instruct"


def run_lm_eval(args: list[str], out: Path, timeout: float = 1200) -> dict[str, Any]:
    """`python -m lm_eval ARGS --log_samples` from the task folder (its YAMLs name their jsonl relatively);
    returns {"results": ..., "samples": {task: [rows by doc_id]}}."""
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, "-m", "lm_eval", *args, "--include_path", str(TASKS), "--output_path", str(out),
         "--log_samples"],
        cwd=TASKS, env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    samples: dict[str, list[dict[str, Any]]] = {}
    for path in out.rglob("samples_*.jsonl"):
        task = path.name.removeprefix("samples_").rsplit("_", 1)[0]
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        samples[task] = sorted(rows, key=lambda r: r["doc_id"])
    return {"results": results["results"], "samples": samples}


@pytest.fixture(scope="module")
def served_mc(deploy_server, tmp_path_factory):
    model_args = f"base_url={deploy_server.base_url}/completions,model={MODEL},num_concurrent=2,max_retries=1"
    return run_lm_eval(["--model", "local-completions", "--model_args", model_args, "--tasks", "swiftcli_qa_mc"],
                       tmp_path_factory.mktemp("lm-eval-served"))


@pytest.fixture(scope="module")
def transformers_mc(embedded_spec, tmp_path_factory):
    model_args = f"pretrained={embedded_spec.model_dir},dtype=float32"
    return run_lm_eval(["--model", "hf", "--model_args", model_args, "--device", "cpu", "--batch_size", "8",
                        "--tasks", "swiftcli_qa_mc"], tmp_path_factory.mktemp("lm-eval-hf"))


def choice_loglikelihoods(run: dict[str, Any]) -> list[list[float]]:
    # resps: per choice [[loglikelihood, is_greedy]], as strings in the samples file
    return [[float(resp[0][0]) for resp in row["resps"]] for row in run["samples"]["swiftcli_qa_mc"]]


@pytest.mark.slow
def test_local_completions_against_deploy_matches_transformers(served_mc, transformers_mc):
    served, reference = served_mc["results"]["swiftcli_qa_mc"], transformers_mc["results"]["swiftcli_qa_mc"]
    assert served["acc,none"] == reference["acc,none"]
    assert served["acc_norm,none"] == reference["acc_norm,none"]
    ours, theirs = choice_loglikelihoods(served_mc), choice_loglikelihoods(transformers_mc)
    assert len(ours) == len(theirs) == 16 and all(len(row) == 4 for row in ours)
    for doc, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert a == pytest.approx(b, abs=0.05), f"doc {doc}"
    # Real scores, not chance: a wrong logprob shape gives lm-eval ~0.25 on four options without an error.
    assert served["acc,none"] > 0.5
    greedy = [[resp[0][1] for resp in row["resps"]] for row in served_mc["samples"]["swiftcli_qa_mc"]]
    assert greedy == [[resp[0][1] for resp in row["resps"]] for row in transformers_mc["samples"]["swiftcli_qa_mc"]]


@pytest.mark.slow
def test_generate_until_through_local_chat_completions(deploy_server, tmp_path):
    import openai

    model_args = f"base_url={deploy_server.base_url}/chat/completions,model={MODEL},max_retries=1"
    run = run_lm_eval(["--model", "local-chat-completions", "--model_args", model_args, "--apply_chat_template",
                       "--tasks", "swiftcli_qa_gen"], tmp_path)
    rows = run["samples"]["swiftcli_qa_gen"]
    client = openai.OpenAI(base_url=deploy_server.base_url, api_key="EMPTY")
    for row in rows:
        # lm-eval's answer is the server's greedy answer to the same chat.
        messages = [{"role": "user", "content": row["doc"]["question"]}]
        reply = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=32)
        assert row["resps"][0][0] == reply.choices[0].message.content
    france = rows[0]
    assert france["resps"][0][0] == "The capital of France is Paris." and france["exact_match"] == 1.0
    expected = sum(row["doc"]["answer"] in row["resps"][0][0] for row in rows) / len(rows)
    assert run["results"]["swiftcli_qa_gen"]["exact_match,first_capital"] == pytest.approx(expected)


# --- swiftcli eval: loglikelihood scoring and --lm_eval_tasks, checked against lm-eval ---------------------------

QA_MC = TASKS / "qa_mc.jsonl"  # the same rows as the swiftcli_qa_mc task, and the same prompt


def invoke(args: list[str]) -> Any:
    from typer.testing import CliRunner

    from swiftcli.cli.main import app

    return CliRunner().invoke(app, args, env={"COLUMNS": "120"})


def swiftcli_run(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    summary = json.loads((path / "summary.json").read_text())
    samples = [json.loads(line) for line in (path / "samples.jsonl").read_text().splitlines()]
    return summary, samples


def assert_same_scores(summary: dict[str, Any], samples: list[dict[str, Any]], lm_eval_run: dict[str, Any],
                       tolerance: float) -> None:
    entry = next(d for d in summary["datasets"] if d["name"] == "qa_mc")
    reference = lm_eval_run["results"]["swiftcli_qa_mc"]
    assert entry["metrics"]["accuracy"] == pytest.approx(100 * reference["acc,none"])
    assert entry["metrics"]["accuracy_norm"] == pytest.approx(100 * reference["acc_norm,none"])
    assert "loglikelihood" in entry["method"]["accuracy"] and "acc_norm" in entry["method"]["accuracy_norm"]
    ours = [s["loglikelihoods"] for s in samples if s["dataset"] == "qa_mc"]
    for doc, (a, b) in enumerate(zip(ours, choice_loglikelihoods(lm_eval_run), strict=True)):
        assert a == pytest.approx(b, abs=tolerance), f"doc {doc}"


@pytest.mark.slow
def test_eval_url_scores_multiple_choice_like_lm_eval(deploy_server, served_mc, tmp_path):
    out = tmp_path / "served"
    result = invoke(["eval", "--eval_url", deploy_server.base_url, "--eval_dataset", str(QA_MC),
                     "--eval_output_dir", str(out)])
    assert result.exit_code == 0, result.output
    summary, samples = swiftcli_run(out)
    assert summary["settings"]["mc_method"] == "loglikelihood"
    assert_same_scores(summary, samples, served_mc, 1e-4)
    assert all(s["output_tokens"] == 0 and s["prompt"].startswith("Question: ") for s in samples)


@pytest.mark.slow
def test_local_vllm_scores_multiple_choice_like_lm_eval(vllm_engine, served_mc, tmp_path, monkeypatch):
    monkeypatch.setattr("swiftcli.engines.loader.start_engine", lambda *a, **k: SharedEngine(vllm_engine))
    out = tmp_path / "vllm"
    result = invoke(["eval", "--eval_dataset", str(QA_MC), "--eval_output_dir", str(out)])
    assert result.exit_code == 0, result.output
    assert_same_scores(*swiftcli_run(out), served_mc, 1e-3)


@pytest.mark.slow
def test_pt_scores_and_lm_eval_tasks_fold_into_the_run(pt_engine, transformers_mc, tmp_path, monkeypatch):
    monkeypatch.setattr("swiftcli.engines.loader.start_engine", lambda *a, **k: SharedEngine(pt_engine))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "pt"
    result = invoke(["eval", "--infer_backend", "pt", "--eval_dataset", str(QA_MC), "--lm_eval_tasks",
                     "swiftcli_qa_mc", "--lm_eval_include_path", str(TASKS), "--eval_output_dir", str(out)])
    assert result.exit_code == 0, result.output
    summary, samples = swiftcli_run(out)
    assert_same_scores(summary, samples, transformers_mc, 1e-3)
    harness = next(d for d in summary["datasets"] if d["name"] == "swiftcli_qa_mc")
    reference = transformers_mc["results"]["swiftcli_qa_mc"]
    assert harness["kind"] == "lm_eval" and harness["ok"] == 16
    assert harness["metrics"]["acc"] == pytest.approx(100 * reference["acc,none"])
    assert harness["metrics"]["acc_norm"] == pytest.approx(100 * reference["acc_norm,none"])
    assert "lm-evaluation-harness" in harness["method"]["acc"]
    rows = [s for s in samples if s["dataset"] == "swiftcli_qa_mc"]
    expected = [row["acc"] == 1.0 for row in transformers_mc["samples"]["swiftcli_qa_mc"]]
    assert [r["correct"] for r in sorted(rows, key=lambda r: r["index"])] == expected
    assert "swiftcli_qa_mc" in result.stdout


@pytest.mark.slow
def test_lm_eval_task_errors_come_before_the_model_loads(tmp_path, monkeypatch):
    def no_engine(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model must not load")

    monkeypatch.setattr("swiftcli.engines.loader.start_engine", no_engine)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    unknown = invoke(["eval", "--lm_eval_tasks", "swiftcli_qa_mcq", "--lm_eval_include_path", str(TASKS),
                      "--eval_output_dir", str(tmp_path / "a")])
    assert unknown.exit_code != 0 and "no task or group named 'swiftcli_qa_mcq'" in unknown.output
    assert "swiftcli_qa_mc" in unknown.output  # did you mean
    hub = invoke(["eval", "--lm_eval_tasks", "arc_easy", "--eval_output_dir", str(tmp_path / "b")])
    assert hub.exit_code == 1 and "need data from the Hugging Face hub" in hub.output, hub.output
    for result in (unknown, hub):
        assert "Traceback" not in result.output
    bad = invoke(["eval", "--eval_dataset", str(QA_MC), "--eval_mc_method", "letters"])
    assert bad.exit_code == 2 and "'--eval-mc-method': 'letters' is not one of loglikelihood, generate" in bad.output
