"""`--api_url`: `swiftcli infer` and `swiftcli chat` against a live `swiftcli deploy` (the session server), the
answers the same as the local engine's; options that only mean something locally are refused by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from swiftcli.cli.main import app

FRANCE = "What is the capital of France?"
QUESTIONS = [FRANCE, "What is the capital of Japan?", "How many days are there in a week?",
             "What color is the sky on a clear day?", "What is 2 + 2?"]


def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> object:
    return CliRunner().invoke(app, list(args), input=input, env={"COLUMNS": "200", **(env or {})})


# ---- engine-free ----


def test_request_fields_from_sampling_settings():
    from swiftcli.errors import UsageError
    from swiftcli.generation.remote import request_config

    kwargs = request_config({"do_sample": False, "temperature": 0.7, "top_k": 5, "repetition_penalty": 1.1,
                             "max_new_tokens": 9, "stop": [], "seed": 3}).to_kwargs(chat=True)
    assert kwargs["temperature"] == 0.0, "do_sample false is greedy"
    assert kwargs["max_tokens"] == 9 and kwargs["seed"] == 3 and "stop" not in kwargs
    assert kwargs["extra_body"] == {"top_k": 5, "repetition_penalty": 1.1}
    assert request_config({}).to_kwargs(chat=True) == {"n": 1, "stream": False}, "unset stays the server's"
    with pytest.raises(UsageError, match="logprobs"):
        request_config({"logprobs": 2})


def test_do_sample_alone_is_not_turned_back_into_greedy():
    from swiftcli.cli.infer import INFER_DEFAULTS
    from swiftcli.cli.remote import sampling
    from swiftcli.config.spec import GenerationOverrides

    assert sampling(GenerationOverrides(), **INFER_DEFAULTS) == {"temperature": 0.0, "do_sample": False}
    # The greedy default gives way: nothing pins the temperature, so the server samples at its own.
    assert sampling(GenerationOverrides(do_sample=True), **INFER_DEFAULTS) == {"do_sample": True}
    assert sampling(GenerationOverrides(do_sample=True), temperature=0.0, repetition_penalty=1.1) == {
        "repetition_penalty": 1.1, "do_sample": True}


def test_chat_sampling_a_server_lists_is_read_only_when_valid():
    from swiftcli.config.sampling import chat_sampling, read_chat_sampling
    from swiftcli.config.spec import GenerationConfig

    greedy = GenerationConfig(do_sample=False, repetition_penalty=1.1)
    assert chat_sampling(greedy) == {"temperature": 0.0, "repetition_penalty": 1.1}, "top_p/top_k mean nothing"
    assert chat_sampling(GenerationConfig()) == {"temperature": 0.3, "top_p": 0.7, "top_k": 20}
    assert read_chat_sampling(chat_sampling(greedy)) == chat_sampling(greedy)
    # Another server's field, or a broken one, is not ours to follow: the client then sends what the user set.
    for listed in (None, [], {}, {"top_p": 0.5}, {"temperature": -1}, {"temperature": True},
                   {"temperature": 0.5, "seed": 3}, {"temperature": "hot"}):
        assert read_chat_sampling(listed) == {}, listed


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--ckpt_dir", "ckpt", "--infer_backend", "pt"], "--ckpt-dir, --infer-backend"),
        (["--dtype", "bf16", "--max_model_len", "512"], "--dtype, --max-model-len"),
        (["--template_type", "chatml"], "--template-type"),
        (["--val_dataset", "x.jsonl", "--load_dataset_config", "true"], "--load-dataset-config"),
    ],
)
def test_local_model_options_are_refused_by_name(args, named, tmp_path):
    (tmp_path / "x.jsonl").write_text('{"query": "hi"}\n')
    args = [str(tmp_path / a) if a == "x.jsonl" else a for a in args]
    result = invoke("infer", "--api_url", "http://127.0.0.1:9/v1", "--query", "hi", *args)
    assert result.exit_code == 2, result.output
    assert f"--api-url asks a running server; {named} configure a local model" in result.output
    assert "Traceback" not in result.output


def test_chat_refuses_local_options_and_checks_sampling_before_connecting():
    result = invoke("chat", "--api_url", "http://127.0.0.1:9/v1", "--merge_lora", "true")
    assert result.exit_code == 2 and "--merge-lora configure a local model" in result.output, result.output
    result = invoke("chat", "--api_url", "http://127.0.0.1:9/v1", "--top_p", "2")
    assert result.exit_code == 2 and "--top-p must be in (0, 1]" in result.output, result.output


def test_max_concurrency_needs_api_url_and_the_url_comes_from_the_environment():
    result = invoke("infer", "--query", "hi", "--max_concurrency", "4")
    assert result.exit_code == 2 and "--max-concurrency applies to --api-url" in result.output, result.output
    result = invoke("infer", "--query", "hi", env={"SWIFTCLI_API_URL": "http://127.0.0.1:9/v1"})
    assert result.exit_code == 1, result.output
    assert "Error: cannot reach http://127.0.0.1:9/v1" in result.output and "Traceback" not in result.output


# ---- against the live session server ----


def test_infer_through_the_server_answers_as_the_local_engine(deploy_server, lend_session_engine):
    """The real CLI in a subprocess against the live deploy; the local answers from the same CLI in-process."""
    args = [arg for q in QUESTIONS for arg in ("--query", q)] + ["--max_new_tokens", "64"]
    local = invoke("infer", *args, "--output", "json")
    assert local.exit_code == 0, local.output
    local_rows = [json.loads(line) for line in local.stdout.splitlines()]
    env = dict(os.environ, SWIFTCLI_API_URL=deploy_server.base_url)
    done = subprocess.run([sys.executable, "-m", "swiftcli.cli", "infer", *args, "--output", "json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["query"] for r in rows] == QUESTIONS, "answers come back in question order"
    assert [r["response"] for r in rows] == [r["response"] for r in local_rows]
    assert [r["finish_reason"] for r in rows] == [r["finish_reason"] for r in local_rows]
    assert "Paris" in rows[0]["response"] and rows[0]["finish_reason"] == "stop"
    assert all(r["usage"]["completion_tokens"] > 0 for r in rows)
    # Piped stdin goes the same way, and a stop string is sent to the server.
    piped = subprocess.run([sys.executable, "-m", "swiftcli.cli", "infer", "--stop", "Paris"], input=FRANCE,
                           capture_output=True, text=True, env=env, timeout=120)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.strip() == rows[0]["response"].split("Paris")[0].strip()


def test_dataset_through_the_server_resumes(deploy_server, tmp_path: Path):
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"query": q, "response": "?"}) + "\n" for q in QUESTIONS * 2))
    out = tmp_path / "out.jsonl"
    base = ["infer", "--api_url", deploy_server.base_url, "--val_dataset", str(data), "--result_file", str(out),
            "--max_new_tokens", "48", "--max_concurrency", "3"]
    first = invoke(*base, "--output", "json")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["rows"] == 10 and summary["output_tokens"] > 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["query"] for r in rows] == QUESTIONS * 2
    assert rows[0]["response"] == rows[5]["response"] and "Paris" in rows[0]["response"], "greedy, in order"

    # A run killed after 4 rows, mid-line: the rerun answers the 6 left and the file is whole again.
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:4]) + lines[4][:10])
    again = invoke(*base)
    assert again.exit_code == 0, again.output
    assert "Resuming" in again.output and "6 rows answered (4 done before)" in again.output
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows


def test_chat_through_the_server(deploy_server):
    # The chat starts from the sampling the server lists for its model (the embedded model's: greedy with a
    # repetition guard), as a local chat does, so the first answers are right without any /set.
    script = "\n".join([FRANCE, "/stats", "/clear", FRANCE, "/exit"]) + "\n"
    result = invoke("chat", "--api_url", deploy_server.base_url, "--no-markdown", "--max_new_tokens", "48",
                    input=script)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "smollm2-135m-instruct at " + deploy_server.base_url in out
    assert ("Sampling: greedy, repetition_penalty 1.1, max_new_tokens 48; the rest the server's defaults."
            in out), out
    assert out.count("Paris") >= 2 and "history: 1 turns" in out and "tok/s" in out
    assert "Traceback" not in out


@pytest.mark.slow
def test_api_key_is_sent_and_a_wrong_one_refused(tmp_path: Path):
    """A keyed server (pt backend: quick to start); the key from --api_key or SWIFTCLI_API_KEY."""
    from server_utils import start_server

    server = start_server(["--infer_backend", "pt", "--dtype", "fp32", "--api_key", "sesame",
                           "--max_new_tokens", "32"])
    try:
        ok = invoke("infer", "--api_url", server.base_url, "--query", FRANCE,
                    env={"SWIFTCLI_API_KEY": "sesame"})
        assert ok.exit_code == 0 and "Paris" in ok.stdout, ok.output
        wrong = invoke("infer", "--api_url", server.base_url, "--api_key", "wrong", "--query", FRANCE)
        assert wrong.exit_code == 1, wrong.output
        assert "refused the API key" in wrong.output and "Traceback" not in wrong.output
    finally:
        server.stop()
