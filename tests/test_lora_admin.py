"""Runtime LoRA in `swiftcli deploy --enable_runtime_lora`: load and unload adapters of a real training run on a
live server, through the official openai client, with the API key; bad adapters refused, the server stays up,
and a stream running while an adapter loads is not disturbed."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from typer.testing import CliRunner

KEY = "runtime-lora-key"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def lora_server(lora_run):
    from server_utils import start_server

    server = start_server(["--enable_runtime_lora", "true", "--max_lora_rank", "8", "--max_new_tokens", "32",
                           "--served_model_name", "base"], env={"SWIFTCLI_API_KEY": KEY}, timeout=900)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(lora_server):
    with openai.OpenAI(base_url=lora_server.base_url, api_key=KEY, max_retries=0, timeout=300) as c:
        yield c


def load(client: openai.OpenAI, name: str, path: Path | str) -> httpx.Response:
    return client.post("/load_lora_adapter", body={"lora_name": name, "lora_path": str(path)},
                       cast_to=httpx.Response)


def unload(client: openai.OpenAI, name: str) -> httpx.Response:
    return client.post("/unload_lora_adapter", body={"lora_name": name}, cast_to=httpx.Response)


def ask(client: openai.OpenAI, model: str, max_tokens: int = 16) -> str:
    reply = client.chat.completions.create(model=model, messages=QUESTION, temperature=0, max_tokens=max_tokens)
    return reply.choices[0].message.content or ""


@pytest.mark.slow
def test_load_serve_and_unload_an_adapter(client, lora_run):
    base = ask(client, "base")
    assert [m.id for m in client.models.list().data] == ["base"]
    response = load(client, "step30", lora_run / "checkpoint-30")
    assert response.status_code == 200 and "step30" in response.text
    models = {m.id: m.model_extra["parent"] for m in client.models.list().data}
    assert models == {"base": None, "step30": "base"}
    tuned = ask(client, "step30")
    assert tuned and tuned != base  # the adapter is applied, not ignored
    assert ask(client, "base") == base  # and only to requests that name it
    assert unload(client, "step30").status_code == 200
    assert [m.id for m in client.models.list().data] == ["base"]
    with pytest.raises(openai.NotFoundError):
        ask(client, "step30")
    with pytest.raises(openai.NotFoundError, match="cannot be found"):
        unload(client, "step30")
    # Loaded again under the same name, it answers as before (no stale cache entry under an old id).
    assert load(client, "step30", lora_run / "checkpoint-30").status_code == 200
    assert ask(client, "step30") == tuned
    assert unload(client, "step30").status_code == 200


def _bad_adapters(root: Path, good: Path) -> dict[str, tuple[str, str]]:
    """name -> (path, expected message) for adapters the server must refuse."""
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    wide = root / "rank16"
    shutil.copytree(good, wide)
    config = json.loads((wide / "adapter_config.json").read_text())
    (wide / "adapter_config.json").write_text(json.dumps({**config, "r": 16}))
    other_base = root / "other-base"
    shutil.copytree(good, other_base)
    tensors = load_file(str(good / "adapter_model.safetensors"))
    # An adapter trained on a wider model: lora_A takes 1024 inputs where this base has 576.
    reshaped = {k: (v.new_zeros(v.shape[0], 1024) if ".lora_A." in k else v) for k, v in tensors.items()}
    save_file(reshaped, str(other_base / "adapter_model.safetensors"))
    plain = root / "plain"
    plain.mkdir()
    return {
        "rank": (str(wide), "more than the engine's max_lora_rank 8"),
        "base": (str(other_base), "is not an adapter of this base model"),
        "plain": (str(plain), "is not a LoRA adapter"),
        "missing": (str(root / "missing"), "does not exist"),
        "relative": ("checkpoint-10", "must be an absolute path"),
    }


@pytest.mark.slow
def test_bad_adapters_are_refused_and_the_server_stays_up(client, lora_server, lora_run, tmp_path):
    for name, (path, message) in _bad_adapters(tmp_path, lora_run / "checkpoint-10").items():
        with pytest.raises(openai.BadRequestError) as info:
            load(client, f"bad-{name}", path)
        error = info.value.body
        assert message in error["message"] and error["param"] == "lora_path", (name, error)
    for name, message in (("base", "base model's name"), ("has space", "lora_name must be")):
        with pytest.raises(openai.BadRequestError, match=message):
            load(client, name, lora_run / "checkpoint-10")
    assert load(client, "dup", lora_run / "checkpoint-10").status_code == 200
    with pytest.raises(openai.BadRequestError, match="already been loaded"):
        load(client, "dup", lora_run / "checkpoint-20")
    assert unload(client, "dup").status_code == 200
    assert [m.id for m in client.models.list().data] == ["base"]
    assert httpx.get(f"{lora_server.root_url}/health").status_code == 200


@pytest.mark.slow
def test_the_api_key_guards_the_admin_routes(lora_server, lora_run):
    with openai.OpenAI(base_url=lora_server.base_url, api_key="wrong", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError):
            load(bad, "sneaky", lora_run / "checkpoint-10")
        with pytest.raises(openai.AuthenticationError):
            unload(bad, "base")


@pytest.mark.slow
def test_loading_does_not_disturb_a_stream_in_flight(client, lora_run):
    messages: Any = [{"role": "user", "content": "Write a short story about a cat."}]
    expected = client.chat.completions.create(model="base", messages=messages, temperature=0, max_tokens=64)
    started = threading.Event()
    chunks: list[str] = []
    finish: list[str | None] = []

    def stream() -> None:
        for chunk in client.chat.completions.create(model="base", messages=messages, temperature=0, max_tokens=64,
                                                    stream=True):
            if chunk.choices:
                chunks.append(chunk.choices[0].delta.content or "")
                finish.append(chunk.choices[0].finish_reason)
                started.set()

    worker = threading.Thread(target=stream)
    worker.start()
    assert started.wait(120)
    assert load(client, "mid-stream", lora_run / "checkpoint-20").status_code == 200
    worker.join(300)
    assert "".join(chunks) == expected.choices[0].message.content and finish[-1] == expected.choices[0].finish_reason
    assert unload(client, "mid-stream").status_code == 200


def test_routes_exist_only_when_enabled(embedded_spec):
    from types import SimpleNamespace

    from fastapi.testclient import TestClient

    from swiftcli.server.app import ServerSettings, create_app

    class _NoEngine:  # the routes are added or not before any request: no engine needed to see that
        spec = embedded_spec
        lora_names: list[str] = []
        max_num_seqs, errored = None, False

        def num_unfinished(self):
            return 0

    template = SimpleNamespace(template_type=embedded_spec.template_type)  # the server picks its parsers by it
    app = create_app(ServerSettings(), engine=_NoEngine(), template=template)
    with TestClient(app) as http:
        resp = http.post("/v1/load_lora_adapter", json={"lora_name": "x", "lora_path": "/x"})
        assert resp.status_code == 404 and resp.json()["error"]["type"] == "not_found_error"


def test_runtime_lora_needs_the_vllm_backend():
    from swiftcli.cli.main import app

    result = CliRunner().invoke(app, ["deploy", "--enable_runtime_lora", "true", "--infer_backend", "pt"],
                                env={"COLUMNS": "120"})
    assert result.exit_code == 2 and "--enable-runtime-lora needs a backend with adapters added at runtime" in (
        " ".join(result.output.split()))
