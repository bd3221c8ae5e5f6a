"""`swiftcli app-ui` hardening: a login (--auth / --auth_file), a concurrency limit, and no exception text in
the page."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from swiftcli.cli.main import app

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "120"})


def test_bad_logins_are_usage_errors_that_do_not_echo_the_secret(tmp_path):
    result = invoke("app-ui", "--auth", "alice-no-colon-s3cret")
    assert result.exit_code == 2 and "--auth: a login must be USER:PASSWORD" in result.stderr
    assert "s3cret" not in result.output
    empty = tmp_path / "logins"
    empty.write_text("# nobody yet\n\n")
    result = invoke("app-ui", "--auth_file", str(empty))
    assert result.exit_code == 2 and "holds no USER:PASSWORD line" in result.stderr
    result = invoke("app-ui", "--auth_file", str(tmp_path / "missing"))
    assert result.exit_code == 2 and "cannot read --auth-file" in result.stderr
    result = invoke("app-ui", "--max_concurrency", "0")
    assert result.exit_code == 2


def test_parse_auth_reads_both_sources():
    from swiftcli.cli.app_ui import parse_auth

    assert parse_auth([], None) is None
    assert parse_auth(["a:b:c"], None) == [("a", "b:c")]  # a password may hold colons


def test_page_errors_are_generic_except_our_own_input_errors():
    from swiftcli.errors import ContextLengthError, EngineError
    from swiftcli.webui.app import PAGE_ERROR, page_error

    assert page_error(RuntimeError("boom in /home/me/secret/model.py")) == PAGE_ERROR
    assert page_error(EngineError("vLLM crashed reading /root/.cache/x")) == PAGE_ERROR
    too_long = page_error(ContextLengthError("the prompt does not fit the context of 2048 tokens"))
    assert "context of 2048 tokens" in too_long


def test_chat_events_share_one_concurrency_limit():
    from swiftcli.webui.app import build_app

    class Backend:
        model_name, max_new_tokens_limit, default_system, supports_system, takes_images = "m", 64, None, True, False

    demo = build_app(Backend(), concurrency=3)  # type: ignore[arg-type]
    chat = [fn for fn in demo.fns.values() if fn.concurrency_id == "chat"]
    assert len(chat) == 3 and {fn.concurrency_limit for fn in chat} == {3}


@pytest.mark.slow
def test_login_is_required_on_the_real_page(tmp_path):
    from server_utils import free_port

    logins = tmp_path / "logins"
    logins.write_text("# the team\nalice:wonder:land\n")
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "VLLM_CPU_KVCACHE_SPACE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "swiftcli.cli", "app-ui", "--infer_backend", "pt", "--port",
                             str(port), "--auth_file", str(logins), "--max_concurrency", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, f"app-ui exited with {proc.returncode}"
            try:
                if httpx.get(url + "/", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the page did not come up"
            time.sleep(1)
        with httpx.Client(base_url=url, timeout=30) as anonymous:
            assert anonymous.get("/config").status_code == 401
            wrong = anonymous.post("/login", data={"username": "alice", "password": "wonder"})
            assert wrong.status_code in (400, 401)
            assert anonymous.get("/config").status_code == 401
        with httpx.Client(base_url=url, timeout=30) as alice:
            assert alice.post("/login", data={"username": "alice", "password": "wonder:land"}).status_code == 200
            assert alice.get("/config").status_code == 200
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
