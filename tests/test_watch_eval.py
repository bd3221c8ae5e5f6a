"""`swiftcli deploy --watch DIR --eval_dataset FILE` on a live server: checkpoints written while it runs are scored
in the background, `best` follows the top score, the scores are those of `swiftcli eval` on the same checkpoint,
and a restarted server reads them back instead of scoring again. Bad combinations fail before any model loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from test_watch import KEY, ask, rows, wait_for
from typer.testing import CliRunner

from swiftcli.cli.main import app

QA = [
    {"query": "What is the capital of France?", "response": "The capital of France is Paris."},
    {"query": "Name a primary colour.", "response": "Red"},
    {"query": "Say hello in French.", "response": "Bonjour"},
]


def scored(*names: str) -> Any:
    return lambda t: all(rows(t).get(n, {}).get("eval_status") == "scored" for n in names)


def summary_of(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())


def predictions(run_dir: Path) -> list[Any]:
    lines = (run_dir / "samples.jsonl").read_text().splitlines()
    return [json.loads(line)["prediction"] for line in lines]


@pytest.mark.slow
def test_watch_scores_checkpoints_and_serves_the_best(embedded_spec, tmp_path, lend_session_engine):
    from checkpoints import make_lora_adapter
    from server_utils import start_server

    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in QA))
    run = tmp_path / "run"
    run.mkdir()
    # checkpoint-10: an adapter strong enough to derail the model; checkpoint-20: one that barely moves it.
    make_lora_adapter(embedded_spec.model_dir, run / "checkpoint-10", seed=3, scale=1.0)
    gentle = make_lora_adapter(embedded_spec.model_dir, tmp_path / "staging" / "gentle", seed=4, scale=0.002)
    args = ["--watch", str(run), "--eval_dataset", str(data), "--max_lora_rank", "8", "--served_model_name", "base",
            "--max_new_tokens", "16"]

    server = start_server(args, env={"SWIFTCLI_API_KEY": KEY}, timeout=900)
    try:
        with httpx.Client(base_url=server.root_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as http, \
                openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=300) as client:
            current = wait_for(http, scored("checkpoint-10"), timeout=300)
            assert current["best"] == "checkpoint-10" and rows(current)["checkpoint-10"]["best"]
            first = rows(current)["checkpoint-10"]
            assert first["metrics"]["qa/rouge_l"] == first["score"] and first["main_metric"] == "qa/rouge_l"
            assert ask(client, "best") == ask(client, "checkpoint-10")

            shutil.copytree(gentle, run / "checkpoint-20")
            current = wait_for(http, scored("checkpoint-10", "checkpoint-20"), timeout=300)
            listed = rows(current)
            assert listed["checkpoint-20"]["score"] > listed["checkpoint-10"]["score"], listed
            assert current["best"] == "checkpoint-20" and listed["checkpoint-20"]["best"]
            assert not listed["checkpoint-10"]["best"]
            assert ask(client, "best") == ask(client, "checkpoint-20") != ask(client, "checkpoint-10")
            assert str(run) not in str(current)
    finally:
        assert server.stop() == 0, server.output()[-3000:]

    out = run / "eval"
    served = {name: summary_of(out / name) for name in ("checkpoint-10", "checkpoint-20")}
    assert served["checkpoint-20"]["model"]["step"] == 20 and served["checkpoint-20"]["settings"]["sweep_key"]

    # The same checkpoint through `swiftcli eval` (the session engine, LoRA on): the same answers and metrics.
    single = tmp_path / "single"
    result = CliRunner().invoke(app, ["eval", "--ckpt_dir", str(run / "checkpoint-20"), "--eval_dataset", str(data),
                                      "--max_new_tokens", "16", "--eval_output_dir", str(single)])
    assert result.exit_code == 0, result.output
    assert predictions(single) == predictions(out / "checkpoint-20")
    assert summary_of(single)["datasets"] == served["checkpoint-20"]["datasets"]
    assert summary_of(single)["generation"] == served["checkpoint-20"]["generation"]

    # A restart reads the runs back: nothing rewritten, `best` the same at once.
    written = {name: (out / name / "summary.json").stat().st_mtime_ns for name in served}
    server = start_server(args, env={"SWIFTCLI_API_KEY": KEY}, timeout=900)
    try:
        with httpx.Client(base_url=server.root_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as http:
            current = wait_for(http, scored("checkpoint-10", "checkpoint-20"), timeout=300)
            assert all(rows(current)[name]["eval_resumed"] for name in served)
            assert current["best"] == "checkpoint-20"
    finally:
        assert server.stop() == 0, server.output()[-3000:]
    assert {name: (out / name / "summary.json").stat().st_mtime_ns for name in served} == written


@pytest.mark.parametrize(("extra", "needle"), [
    (["--eval_dataset", "{data}"], "--eval-dataset on deploy scores the checkpoints of --watch"),
    (["--watch", "{run}", "--eval_limit", "2"], "--eval-limit needs --eval-dataset"),
    (["--watch", "{run}", "--eval_dataset", "{missing}"], "does not exist"),
])
def test_bad_scoring_options_fail_before_loading(tmp_path, extra, needle):
    data = tmp_path / "qa.jsonl"
    data.write_text(json.dumps(QA[0]) + "\n")
    (tmp_path / "run").mkdir()
    names = {"data": data, "run": tmp_path / "run", "missing": tmp_path / "missing.jsonl"}
    result = CliRunner().invoke(app, ["deploy", *[a.format(**names) for a in extra]])
    assert result.exit_code in (1, 2), result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and needle in errors[0] and "Traceback" not in result.output, result.output
