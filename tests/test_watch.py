"""`swiftcli deploy --watch DIR` on a live server: checkpoints written into a training folder while it runs are
served under their names (the same greedy answer as the same adapter given by --lora_modules), `latest` follows
the newest, a deleted one is unloaded, a full-weight one is listed but not loaded; bad folders fail at once."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from typer.testing import CliRunner

from swiftcli.cli.main import app

KEY = "watch-key"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def table(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/v1/checkpoints")
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(client: httpx.Client, done: Callable[[dict[str, Any]], bool], timeout: float = 180) -> dict[str, Any]:
    """Poll the table until `done(table)`; the last table in the failure message."""
    deadline = time.monotonic() + timeout
    current = table(client)
    while not done(current):
        assert time.monotonic() < deadline, f"the checkpoint table did not reach the state in time: {current}"
        time.sleep(0.5)
        current = table(client)
    return current


def rows(current: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in current["data"]}


def ask(client: openai.OpenAI, model: str) -> str:
    reply = client.chat.completions.create(model=model, messages=QUESTION, temperature=0, max_tokens=16)
    return reply.choices[0].message.content or ""


@pytest.mark.slow
def test_watch_serves_checkpoints_as_they_appear(embedded_spec, tmp_path):
    from checkpoints import make_lora_adapter
    from server_utils import start_server

    run = tmp_path / "run"
    run.mkdir()
    make_lora_adapter(embedded_spec.model_dir, run / "checkpoint-10", seed=1, scale=0.15)
    # A full-weight checkpoint: the base model's own files, linked rather than copied.
    shutil.copytree(embedded_spec.model_dir, run / "checkpoint-5", copy_function=os.link)
    newer = make_lora_adapter(embedded_spec.model_dir, tmp_path / "staging" / "adapter", seed=0, scale=0.15)

    server = start_server(["--watch", str(run), "--lora_modules", f"reference={newer}", "--max_lora_rank", "8",
                           "--served_model_name", "base", "--max_new_tokens", "16"],
                          env={"SWIFTCLI_API_KEY": KEY}, timeout=900)
    try:
        with httpx.Client(base_url=server.root_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as http, \
                openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=300) as client:
            assert httpx.get(f"{server.root_url}/v1/checkpoints").status_code == 401  # same auth as the API

            current = wait_for(http, lambda t: t["latest"] == "checkpoint-10")
            listed = rows(current)
            assert listed["checkpoint-10"]["loaded"] and listed["checkpoint-10"]["step"] == 10
            full = listed["checkpoint-5"]
            assert not full["loaded"] and full["kind"] == "full" and "full-weight" in full["reason"]
            assert str(run) not in str(current)  # reasons name checkpoints, never server paths

            # A checkpoint written while the server runs: served once its files stop changing.
            shutil.copytree(newer, run / "checkpoint-20")
            current = wait_for(http, lambda t: t["latest"] == "checkpoint-20")
            assert rows(current)["checkpoint-20"]["loaded"]
            served = {m.id for m in client.models.list().data}
            assert {"base", "reference", "checkpoint-10", "checkpoint-20", "latest"} <= served

            base, reference = ask(client, "base"), ask(client, "reference")
            assert reference != base  # the adapter changes the answer, so equality below means it is applied
            assert ask(client, "checkpoint-20") == reference
            assert ask(client, "latest") == reference
            assert ask(client, "checkpoint-10") != reference  # each id answers with its own adapter

            shutil.rmtree(run / "checkpoint-20")
            current = wait_for(http, lambda t: "checkpoint-20" not in rows(t))
            assert current["latest"] == "checkpoint-10"
            with pytest.raises(openai.NotFoundError):
                ask(client, "checkpoint-20")
            assert ask(client, "latest") == ask(client, "checkpoint-10")
    finally:
        assert server.stop() == 0, server.output()[-3000:]


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_watch_bad_folder_is_one_error_line(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "nothing-here"
    if kind == "file":
        target.write_text("not a folder\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["deploy", "--watch", str(target)])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "--watch" in errors[0] and "Traceback" not in result.output
