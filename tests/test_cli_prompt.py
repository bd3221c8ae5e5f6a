"""The question as an argument, as `llm` and `ollama run` take it, checked against a server that records what it
receives (no engine): `infer "question"` asks exactly that, `chat "question"` asks it first and then reads on,
`--query` and `-q` keep working, and `SWIFTCLI_API_URL` / `SWIFTCLI_API_KEY` reach every client command."""

from __future__ import annotations

import json

from recording_server import REPLY, RecordingServer
from typer.testing import CliRunner

from swiftcli.cli.main import app

QUESTION = "What is the capital of France?"


def last_user_message(body: dict) -> str:
    return [m["content"] for m in body["messages"] if m["role"] == "user"][-1]


def test_infer_takes_the_question_as_an_argument():
    with RecordingServer() as server:
        result = CliRunner().invoke(app, ["infer", QUESTION, "--api_url", server.url, "-o", "json"])
        assert result.exit_code == 0, result.output
        (body,) = server.bodies
    assert last_user_message(body) == QUESTION
    assert json.loads(result.stdout)["response"] == REPLY


def test_query_and_quiet_spellings():
    """`-q` is --quiet now; `infer -q "question"` still asks the question (as the argument), and quietly."""
    with RecordingServer() as server:
        for args in (["--query", QUESTION], ["-q", QUESTION], [QUESTION, "--quiet"]):
            result = CliRunner().invoke(app, ["infer", *args, "--api_url", server.url])
            assert result.exit_code == 0, result.output
            assert result.stdout == f"{REPLY}\n" and result.stderr == ""
        several = CliRunner().invoke(app, ["infer", "--query", "a b", "--query", "c d", "--api_url", server.url])
        assert several.exit_code == 0 and several.stdout == f"{REPLY}\n{REPLY}\n"
    asked = [last_user_message(b) for b in server.bodies]
    # the two queries of one command are sent at once, so they may arrive in either order
    assert asked[:3] == [QUESTION] * 3 and sorted(asked[3:]) == ["a b", "c d"]


def test_chat_asks_the_first_question_then_reads_on():
    with RecordingServer() as server:
        result = CliRunner().invoke(app, ["chat", QUESTION, "--no-markdown"], input="And of Italy?\n/exit\n",
                                    env={"SWIFTCLI_API_URL": server.url})
        assert result.exit_code == 0, result.output
        first, second = server.bodies
    assert last_user_message(first) == QUESTION and last_user_message(second) == "And of Italy?"
    assert f">>> {QUESTION}" in result.stdout


def test_the_key_comes_from_swiftcli_api_key_for_each_client_command():
    with RecordingServer(key="sesame") as server:
        env = {"SWIFTCLI_API_URL": server.url, "SWIFTCLI_API_KEY": "sesame"}
        assert CliRunner().invoke(app, ["infer", QUESTION], env=env).exit_code == 0
        assert CliRunner().invoke(app, ["chat", "--no-markdown"], input=f"{QUESTION}\n/exit\n",
                                  env=env).exit_code == 0
        refused = CliRunner().invoke(app, ["infer", QUESTION], env={**env, "SWIFTCLI_API_KEY": "wrong"})
        assert refused.exit_code != 0 and "Traceback" not in refused.output
    assert all(h.get("authorization") == "Bearer sesame" for h in server.headers[:2])


def test_app_ui_reads_swiftcli_api_url_and_key(monkeypatch):
    """app-ui's --api-url/--api-key default to SWIFTCLI_API_URL/SWIFTCLI_API_KEY, as infer's and chat's do (it read
    OPENAI_API_KEY before); the page's start is recorded instead of served."""
    served = []
    monkeypatch.setattr("swiftcli.cli.app_ui.serve_page", lambda backend, *rest: served.append(backend))
    monkeypatch.setattr("swiftcli.cli.app_ui.show_request_logs", lambda: None)
    monkeypatch.setattr("swiftcli.cli.app_ui.check_port_free", lambda *args: None)  # 7860 may be in use here
    with RecordingServer(key="sesame") as server:
        env = {"SWIFTCLI_API_URL": server.url, "SWIFTCLI_API_KEY": "sesame", "OPENAI_API_KEY": "not-this-one"}
        result = CliRunner().invoke(app, ["app-ui", "--port", "0"], env=env)
        assert result.exit_code == 2  # the page's own checks still run first
        result = CliRunner().invoke(app, ["app-ui"], env=env)
        assert result.exit_code == 0, result.output
    (backend,) = served
    assert backend.base_url.rstrip("/") == server.url.rstrip("/") and backend.client.api_key == "sesame"
