"""`deploy --log_requests`: a real server (vLLM, embedded model) records what it served through each API, takes
ratings behind its key, rotates the log by size, and `swiftcli logs` lists and exports the records."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from typer.testing import CliRunner

from swiftcli.cli.main import app
from swiftcli.data.request_log import log_files
from swiftcli.export.request_rows import load_requests

KEY = "sekret-key-7f3a"
BETTER = "Paris (its capital since 987)."


def _wait_for(path: Path, check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        requests = load_requests(path) if log_files(path) else []
        if check(requests):
            return requests
        if time.monotonic() > deadline:
            raise AssertionError(f"the log never got there: {[r.record['id'] for r in requests]}")
        time.sleep(0.2)


def _cancel_a_stream(base_url: str, model: str) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": "Count to one thousand."}], "stream": True,
            "max_tokens": 400, "ignore_eos": True}
    with httpx.Client(timeout=60) as client, client.stream(
            "POST", f"{base_url}/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}) as reply:
        assert reply.status_code == 200
        for chunk in reply.iter_bytes():
            if b'"content"' in chunk and b'"content": ""' not in chunk:
                break  # leave with the answer under way


@pytest.mark.slow
def test_served_requests_are_logged_rated_and_exported(tmp_path: Path) -> None:
    from server_utils import start_server

    log = tmp_path / "requests.jsonl"
    server = start_server(["--api_key", KEY, "--max_new_tokens", "32", "--log_requests", str(log),
                           "--log_requests_max_bytes", "900", "--log_requests_keep", "50"])
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key=KEY)
        model = client.models.list().data[0].id
        question = [{"role": "system", "content": "Answer in one word."},
                    {"role": "user", "content": "What is the capital of France?"}]
        chat = client.chat.completions.create(model=model, messages=question, temperature=0, max_tokens=8)
        completion = client.completions.create(model=model, prompt="The capital of France is", max_tokens=6)
        stream = client.chat.completions.create(model=model, messages=question[1:], stream=True, max_tokens=12,
                                                stream_options={"include_usage": True})
        streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        stream_id = None
        _cancel_a_stream(server.base_url, model)
        response = client.responses.create(model=model, input="Name a color.", max_output_tokens=8)
        with anthropic.Anthropic(base_url=server.root_url, api_key=KEY, max_retries=0, timeout=120) as claude, \
                claude.messages.stream(model=model, max_tokens=8, system="Be brief.",
                                       messages=[{"role": "user", "content": "Say hi."}]) as claude_stream:
            message = claude_stream.get_final_message()

        logged = _wait_for(log, lambda rs: len(rs) >= 6)
        by_id = {r.record["id"]: r.record for r in logged}
        stream_id = next(r.record["id"] for r in logged if r.record["stream"] and r.record["status"] == "finished")

        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            rate = f"/requests/{chat.id}/rating"
            assert http.post(rate, json={"rating": -1}).status_code == 401
            auth = {"Authorization": f"Bearer {KEY}"}
            rated = http.post(rate, json={"rating": -1, "preferred": BETTER}, headers=auth)
            assert rated.status_code == 200, rated.text
            assert rated.json()["preferred"] == BETTER
            assert http.post(f"/requests/{stream_id}/rating", json={"rating": 1}, headers=auth).status_code == 200
            missing = http.post("/requests/chatcmpl-nope/rating", json={"rating": 1}, headers=auth)
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "request_not_found"
            assert http.post(rate, json={"stars": 5}, headers=auth).status_code == 400
        _wait_for(log, lambda rs: sum(bool(r.rating) for r in rs) == 2)
    finally:
        server.stop()

    # what each API served, as the client saw it
    assert by_id[chat.id]["route"] == "chat" and by_id[chat.id]["messages"] == question
    assert by_id[chat.id]["answer"]["text"] == chat.choices[0].message.content
    assert by_id[chat.id]["sampling"]["temperature"] == 0 and by_id[chat.id]["sampling"]["max_new_tokens"] == 8
    assert by_id[chat.id]["usage"] == {"prompt_tokens": chat.usage.prompt_tokens,
                                       "completion_tokens": chat.usage.completion_tokens}
    assert by_id[completion.id]["route"] == "completions"
    assert by_id[completion.id]["prompt"] == "The capital of France is"
    assert by_id[completion.id]["answer"]["text"] == completion.choices[0].text
    assert by_id[stream_id]["answer"]["text"] == streamed and by_id[stream_id]["usage"]["completion_tokens"] > 0
    assert by_id[response.id]["route"] == "responses" and by_id[response.id]["answer"]["text"] == \
        response.output_text
    said = by_id[message.id]
    assert said["route"] == "messages" and said["stream"] and said["finish_reason"] == message.stop_reason
    assert said["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi."}]
    assert said["answer"]["text"] == "".join(b.text for b in message.content if b.type == "text")
    cancelled = [r for r in by_id.values() if r["status"] == "cancelled"]
    assert len(cancelled) == 1 and cancelled[0]["stream"] and cancelled[0]["usage"]["completion_tokens"] < 400
    assert all(r["latency_s"] > 0 and r["finish_reason"] for r in by_id.values() if r["status"] == "finished")

    # rotated by size, nothing lost, and no key anywhere
    files = log_files(log)
    assert len(files) > 2
    assert not any(KEY in f.read_text() for f in files)

    listed = CliRunner().invoke(app, ["logs", str(log), "--output", "json"])
    assert listed.exit_code == 0, listed.output
    assert {r["route"] for r in json.loads(listed.stdout)} == {"chat", "completions", "responses", "messages"}
    rated = CliRunner().invoke(app, ["logs", str(log), "--rated", "--output", "json"])
    assert {r["id"] for r in json.loads(rated.stdout)} == {chat.id, stream_id}
    table = CliRunner().invoke(app, ["logs", str(log), "--limit", "2"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "2 request(s)" in table.output

    sft, dpo = tmp_path / "sft.jsonl", tmp_path / "dpo.jsonl"
    for kind, out in (("sft", sft), ("dpo", dpo)):
        result = CliRunner().invoke(app, ["logs", str(log), "--export", kind, "--output-file", str(out)])
        assert result.exit_code == 0, result.output
    sft_rows = [json.loads(line) for line in sft.read_text().splitlines()]
    assert [row["messages"][-1] for row in sft_rows] == [{"role": "assistant", "content": BETTER},
                                                         {"role": "assistant", "content": streamed}]
    (dpo_row,) = [json.loads(line) for line in dpo.read_text().splitlines()]
    assert dpo_row == {"messages": [*question, {"role": "assistant", "content": BETTER}],
                       "rejected_response": chat.choices[0].message.content}
