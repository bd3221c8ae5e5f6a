"""`swiftcli deploy`: a real server (vLLM on the embedded model) in a subprocess, driven with the openai client.

The session server (`deploy_server`) serves the chat model with defaults; one more server in this module serves it
as a base model (default-generation template) with an API key, a LoRA adapter and a concurrency limit, and ends
with the SIGTERM drain test.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time

import httpx
import openai
import pytest

QUESTION = "What is the capital of France?"


def _chat(client: openai.OpenAI, content: str = QUESTION, **kwargs):
    return client.chat.completions.create(
        model="smollm2-135m-instruct", messages=[{"role": "user", "content": content}], **kwargs
    )


@pytest.fixture(scope="module")
def client(deploy_server):
    with openai.OpenAI(base_url=deploy_server.base_url, api_key="EMPTY", max_retries=0, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def http(deploy_server):
    with httpx.Client(base_url=deploy_server.root_url, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def template(embedded_spec):
    from transformers import AutoTokenizer

    from swiftcli.registry.templates import get_template

    tokenizer = AutoTokenizer.from_pretrained(embedded_spec.model_dir)
    return get_template(embedded_spec.template_type, tokenizer, embedded_spec.default_system)


def _metric(http: httpx.Client, name: str) -> float:
    text = http.get("/metrics").text
    match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


# --- a second server, first: base model (default-generation), API key, LoRA by name, concurrency limit,
# SIGTERM drain. A class, so that its server stops before the session server starts.

KEY = "test-key-1234"


@pytest.fixture(scope="class")
def base_server(lora_ckpt):
    from server_utils import start_server

    server = start_server(
        [
            "--template_type",
            "default-generation",
            "--served_model_name",
            "base",
            "--lora_modules",
            f"mylora={lora_ckpt}",
            "--max_concurrent_requests",
            "2",
            "--shutdown_timeout",
            "120",
        ],
        env={"SWIFTCLI_API_KEY": KEY},
    )
    yield server
    server.stop()


@pytest.fixture(scope="class")
def base_client(base_server):
    with openai.OpenAI(base_url=base_server.base_url, api_key=KEY, max_retries=0, timeout=120) as c:
        yield c


class TestBaseModelServer:
    def test_api_key_is_required(self, base_server):
        for key in ("", "wrong", KEY[:-1]):
            with openai.OpenAI(base_url=base_server.base_url, api_key=key or "EMPTY", max_retries=0) as bad:
                with pytest.raises(openai.AuthenticationError):
                    bad.models.list()
        resp = httpx.post(f"{base_server.base_url}/completions", content=b"{broken")
        assert resp.status_code == 401 and resp.json()["error"]["type"] == "authentication_error"
        assert httpx.get(f"{base_server.root_url}/health").status_code == 200  # health needs no key

    def test_base_model_and_lora_by_name(self, base_client):
        models = base_client.models.list()
        assert [(m.id, m.model_extra["parent"], m.model_extra["is_chat"]) for m in models.data] == [
            ("base", None, False),
            ("mylora", "base", False),
        ]
        prompt = "The capital of France is"
        base = base_client.completions.create(model="base", prompt=prompt, max_tokens=16, temperature=0)
        lora = base_client.completions.create(model="mylora", prompt=prompt, max_tokens=16, temperature=0)
        again = base_client.completions.create(model="mylora", prompt=prompt, max_tokens=16, temperature=0)
        assert base.choices[0].text.startswith(" Paris")
        assert lora.choices[0].text != base.choices[0].text and lora.choices[0].text == again.choices[0].text
        chat = base_client.chat.completions.create(
            model="base", messages=[{"role": "user", "content": prompt}], max_tokens=16, temperature=0
        )
        assert chat.choices[0].message.content == base.choices[0].text
        with pytest.raises(openai.BadRequestError):
            base_client.chat.completions.create(
                model="base",
                max_tokens=4,
                messages=[
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello"},
                    {"role": "user", "content": prompt},
                ],
            )

    def test_base_model_client_example(self, base_server):
        # ms-swift's base-model client example; inference_client finds out that the model is not a chat model.
        from swiftcli import XRequestConfig, get_model_list_client, inference_client

        port = base_server.port
        model_list = get_model_list_client(port=port, api_key=KEY)
        model_type = model_list.data[0].id
        query = "The capital of France is"
        request_config = XRequestConfig(max_tokens=8, temperature=0.1, seed=42)
        resp = inference_client(model_type, query, request_config=request_config, port=port, api_key=KEY)
        response = resp.choices[0].text
        assert resp.object == "text_completion" and "Paris" in response
        request_config = XRequestConfig(max_tokens=8, temperature=0.1, seed=42, stream=True)
        stream_resp = inference_client(model_type, query, request_config=request_config, port=port, api_key=KEY)
        assert "".join(chunk.choices[0].text for chunk in stream_resp) == response

    def test_over_the_concurrency_limit_is_429(self, base_server, base_client):
        long = {"model": "base", "prompt": "Once upon a time", "max_tokens": 4000, "ignore_eos": True, "stream": True}
        headers = {"Authorization": f"Bearer {KEY}"}
        clients = [httpx.Client(base_url=base_server.base_url, timeout=120, headers=headers) for _ in range(2)]
        streams = [c.stream("POST", "/completions", json=long) for c in clients]
        try:
            readers = [stream.__enter__().iter_lines() for stream in streams]  # kept: a dropped reader closes
            for lines in readers:
                while not next(lines).startswith("data: {"):
                    pass
            with pytest.raises(openai.RateLimitError):
                base_client.completions.create(model="base", prompt="Hi", max_tokens=2)
        finally:
            for stream, c in zip(streams, clients, strict=True):
                stream.__exit__(None, None, None)
                c.close()
        deadline = time.monotonic() + 20
        while True:  # the slots come back once the server notices the disconnects
            try:
                assert base_client.completions.create(model="base", prompt="Hi", max_tokens=2).choices
                break
            except openai.RateLimitError:
                assert time.monotonic() < deadline
                time.sleep(0.2)

    def test_sigterm_drains_then_exits_0(self, base_server):
        headers = {"Authorization": f"Bearer {KEY}"}
        body = {
            "model": "base",
            "prompt": "Once upon a time",
            # Long enough that the drain is still waiting on it while the checks below run, on any machine.
            "max_tokens": 200,
            "ignore_eos": True,
            "stream": True,
            "temperature": 0,
        }
        with httpx.Client(base_url=base_server.base_url, timeout=120, headers=headers) as c:
            with c.stream("POST", "/completions", json=body) as resp:
                lines = resp.iter_lines()
                first = next(line for line in lines if line.startswith("data: {"))
                os.kill(base_server.pid, signal.SIGTERM)
                deadline = time.monotonic() + 10
                while httpx.get(f"{base_server.root_url}/health").status_code != 503:
                    assert time.monotonic() < deadline, "/health never turned 503 after SIGTERM"
                    time.sleep(0.05)
                refused = httpx.post(
                    f"{base_server.base_url}/completions",
                    headers=headers,
                    json={"model": "base", "prompt": "Hi", "max_tokens": 2},
                )
                assert refused.status_code == 503 and refused.json()["error"]["message"]
                rest = [first, *lines]
        events = [line for line in rest if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]"
        finish = [json.loads(e[6:])["choices"][0]["finish_reason"] for e in events[:-1]]
        assert finish[-1] == "length"
        assert base_server.process.wait(60) == 0


# --- endpoints


def test_models_health_version(client, http):
    models = client.models.list()
    assert [m.id for m in models.data] == ["smollm2-135m-instruct"]
    assert models.data[0].model_extra["is_chat"] is True
    # What a chat client starts from: the embedded model's registry defaults, as a local chat's.
    assert models.data[0].model_extra["chat_sampling"] == {"temperature": 0.0, "repetition_penalty": 1.1}
    assert http.get("/health").json() == {"status": "ok"}
    version = http.get("/version").json()
    assert version["version"] and version["backend"] == "vllm"


def test_chat_answers_with_exact_usage(client, template):
    resp = _chat(client, temperature=0, logprobs=True)
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "The capital of France is Paris."
    assert choice.finish_reason == "stop"
    assert resp.usage.prompt_tokens == len(template.encode(QUESTION))
    # One logprob entry per generated token (the end-of-turn token included).
    assert resp.usage.completion_tokens == len(choice.logprobs.content)
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_system_and_text_parts_build_the_template_prompt(client, template):
    plain = _chat(client, temperature=0, max_tokens=5)
    parts = client.chat.completions.create(
        model="smollm2-135m-instruct",
        temperature=0,
        max_tokens=5,
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "What is the capital "}, {"type": "text", "text": "of France?"}],
            }
        ],
    )
    assert parts.choices[0].message.content == plain.choices[0].message.content
    system = "You are a pirate."
    resp = client.chat.completions.create(
        model="smollm2-135m-instruct",
        temperature=0,
        max_tokens=5,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": QUESTION}],
    )
    assert resp.usage.prompt_tokens == len(template.encode(QUESTION, system=system))
    history = client.chat.completions.create(
        model="smollm2-135m-instruct",
        temperature=0,
        max_tokens=5,
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": QUESTION},
        ],
    )
    assert history.usage.prompt_tokens == len(template.encode(QUESTION, [("Hi", "Hello!")]))


def test_chat_streaming_equals_non_streaming(client):
    full = _chat(client, "Name three colors.", temperature=0, max_tokens=40)
    chunks = list(
        _chat(
            client,
            "Name three colors.",
            temperature=0,
            max_tokens=40,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1 and finishing[0] is chunks[-2]
    assert finishing[0].choices[0].finish_reason == full.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage == full.usage


def test_raw_sse_format(http):
    with http.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": "smollm2-135m-instruct",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 5,
            "stream": True,
        },
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        body = resp.read().decode()
    events = body.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    for event in events[:-2]:
        assert event.startswith("data: ")
        json.loads(event[len("data: ") :])


def test_streamed_text_never_splits_a_character(client):
    prompt = "Write the word 'café' and the emoji 😀 five times, then write 北京 and 東京."
    full = _chat(client, prompt, temperature=0, max_tokens=60)
    deltas = [
        c.choices[0].delta.content or ""
        for c in _chat(client, prompt, temperature=0, max_tokens=60, stream=True)
        if c.choices
    ]
    assert "".join(deltas) == full.choices[0].message.content
    assert any(ord(ch) > 127 for ch in full.choices[0].message.content)
    assert not any("\ufffd" in d for d in deltas)


def test_sampling_seed_is_reproducible_and_n_gives_choices(client):
    a = _chat(client, "Tell me a story.", temperature=1.0, seed=42, max_tokens=30)
    b = _chat(client, "Tell me a story.", temperature=1.0, seed=42, max_tokens=30)
    c = _chat(client, "Tell me a story.", temperature=1.0, seed=7, max_tokens=30)
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.choices[0].message.content != c.choices[0].message.content
    two = _chat(
        client,
        "Tell me a story.",
        temperature=1.0,
        top_p=0.9,
        n=2,
        seed=1,
        max_tokens=20,
        extra_body={"top_k": 40, "repetition_penalty": 1.1},
        presence_penalty=0.5,
        frequency_penalty=0.5,
    )
    assert [ch.index for ch in two.choices] == [0, 1]
    assert all(ch.finish_reason in ("stop", "length") and ch.message.content for ch in two.choices)
    assert two.usage.completion_tokens <= 40


def test_stop_max_tokens_and_ignore_eos(client):
    stopped = _chat(client, temperature=0, stop=["Paris"])
    assert stopped.choices[0].message.content == "The capital of France is "
    assert stopped.choices[0].finish_reason == "stop"
    short = _chat(client, temperature=0, max_completion_tokens=3)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3
    long = _chat(client, "Hi", temperature=0, max_tokens=24, extra_body={"ignore_eos": True})
    assert long.usage.completion_tokens == 24 and long.choices[0].finish_reason == "length"


def test_chat_top_logprobs(client):
    resp = _chat(client, temperature=0, max_tokens=5, logprobs=True, top_logprobs=3)
    content = resp.choices[0].logprobs.content
    assert len(content) == 5
    for entry in content:
        tops = [t.logprob for t in entry.top_logprobs]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True)
        assert entry.logprob == pytest.approx(tops[0])  # greedy picks the most likely token
    assert "".join(e.token for e in content) == resp.choices[0].message.content


def test_response_format_json_schema(client):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}},
        "required": ["city"],
        "additionalProperties": False,
    }
    resp = _chat(
        client,
        "What is the capital of France? Answer in JSON.",
        temperature=0,
        max_tokens=60,
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}},
    )
    data = json.loads(resp.choices[0].message.content)
    assert set(data) == {"city"} and isinstance(data["city"], str)
    obj = _chat(
        client, "Describe Paris as JSON.", temperature=0, max_tokens=200, response_format={"type": "json_object"}
    )
    assert obj.choices[0].message.content.lstrip().startswith("{")


def test_completions_prompt_list_echo_logprobs_and_stream(client):
    resp = client.completions.create(
        model="smollm2-135m-instruct",
        prompt=["The capital of France is", "1, 2, 3,"],
        max_tokens=4,
        temperature=0,
        echo=True,
        logprobs=2,
    )
    assert [c.index for c in resp.choices] == [0, 1]
    assert resp.choices[0].text.startswith("The capital of France is Paris")
    assert resp.choices[1].text.startswith("1, 2, 3, 4")
    # echo: the prompt's tokens come first (the first has no logprob), then the 4 generated ones
    assert all(len(c.logprobs.tokens) > 4 and c.logprobs.token_logprobs[0] is None
               and len(c.logprobs.top_logprobs[-1]) == 2 for c in resp.choices)
    assert resp.usage.completion_tokens == 8
    full = client.completions.create(
        model="smollm2-135m-instruct", prompt="Once upon a time", max_tokens=20, temperature=0
    )
    chunks = list(
        client.completions.create(
            model="smollm2-135m-instruct",
            prompt="Once upon a time",
            max_tokens=20,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == full.choices[0].text
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].usage.completion_tokens == 20 == full.usage.completion_tokens


# --- errors


def test_error_statuses_and_envelope(client, http):
    def post(body, path="/v1/chat/completions", **kwargs):
        resp = http.post(path, json=body, **kwargs) if body is not None else http.post(path, **kwargs)
        error = resp.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        return resp.status_code, error

    msgs = [{"role": "user", "content": "Hi"}]
    assert post({"model": "smollm2-135m-instruct", "messages": msgs, "temperature": -1})[0] == 400
    assert post({"model": "smollm2-135m-instruct"})[0] == 400
    assert (
        post({"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hi"}], "n": "many"})[0] == 400
    )
    status, error = post(None, content=b"{not json", headers={"content-type": "application/json"})
    assert status == 400 and "JSON" in error["message"]
    status, error = post({"model": "smollm2-135m-instruct", "messages": [{"role": "assistant", "content": "x"}]})
    assert status == 400
    status, error = post({"model": "smollm2-135m-instruct", "prompt": "Hi", "max_tokens": 9000}, path="/v1/completions")
    assert status == 400 and "9000" in error["message"] and "8192" in error["message"]
    status, error = post({"model": "smollm2-135m-instruct", "messages": msgs, "n": 2, "temperature": 0})
    assert status == 400 and "greedy" in error["message"]
    assert http.get("/v1/nothing").status_code == 404
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=msgs)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="smollm2-135m-instruct", messages=msgs, temperature=5)
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="smollm2-135m-instruct", prompt="Hi", max_tokens=9000, stream=True)
    assert "8192" in str(info.value)
    assert http.get("/health").status_code == 200
    assert _chat(client, temperature=0, max_tokens=3).choices[0].message.content


def test_metrics_count_requests_and_tokens(client, http):
    before = _metric(http, "swiftcli_generation_tokens_total")
    resp = _chat(client, temperature=0, max_tokens=4)
    after = _metric(http, "swiftcli_generation_tokens_total")
    assert after - before == resp.usage.completion_tokens
    text = http.get("/metrics").text
    assert re.search(r'swiftcli_requests_total\{endpoint="/v1/chat/completions",status="200"\} [1-9]', text)
    assert re.search(r'swiftcli_requests_total\{endpoint="/v1/chat/completions",status="400"\} [1-9]', text)
    assert "swiftcli_time_to_first_token_seconds_bucket" in text
    assert "swiftcli_e2e_request_latency_seconds_count" in text
    assert _metric(http, "swiftcli_num_requests_running") == 0


# --- load and disconnects


def test_48_concurrent_streams(deploy_server):
    async def one(client: openai.AsyncOpenAI, i: int) -> str:
        stream = await client.chat.completions.create(
            model="smollm2-135m-instruct",
            messages=[{"role": "user", "content": f"Count to {i}."}],
            max_tokens=16,
            temperature=0,
            stream=True,
        )
        parts, finish = [], None
        async for chunk in stream:
            parts.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        assert finish in ("stop", "length")
        return "".join(parts)

    async def run() -> list[str]:
        async with openai.AsyncOpenAI(
            base_url=deploy_server.base_url, api_key="EMPTY", max_retries=0, timeout=300
        ) as client:
            return await asyncio.gather(*(one(client, i) for i in range(48)))

    answers = asyncio.run(run())
    assert len(answers) == 48 and all(answers)


def _wait_engine_idle(http: httpx.Client, timeout: float = 20) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _metric(http, "swiftcli_engine_unfinished_requests") == 0:
            return time.monotonic()
        time.sleep(0.1)
    raise AssertionError("the engine still holds requests after their clients left")


def test_disconnect_aborts_engine_requests(deploy_server, client, http):
    start = time.monotonic()
    _chat(client, temperature=0, max_tokens=8)
    baseline = time.monotonic() - start
    long = {
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": "Write a long essay."}],
        "max_tokens": 4000,
        "ignore_eos": True,
        "temperature": 0,
    }
    clients = [httpx.Client(base_url=deploy_server.root_url, timeout=120) for _ in range(8)]
    streams = [c.stream("POST", "/v1/chat/completions", json={**long, "stream": True}) for c in clients]
    readers = [stream.__enter__().iter_lines() for stream in streams]  # kept: a dropped reader closes
    for lines in readers:
        while not next(lines).startswith("data: {"):
            pass
    assert _metric(http, "swiftcli_engine_unfinished_requests") >= 8
    for stream, c in zip(streams, clients, strict=True):
        stream.__exit__(None, None, None)
        c.close()
    _wait_engine_idle(http)  # 8 x 4000 tokens would take minutes: they were aborted
    start = time.monotonic()
    resp = _chat(client, temperature=0, max_tokens=8)
    assert resp.choices[0].message.content
    # Generous bound: a short request is not stuck behind abandoned work.
    assert time.monotonic() - start < baseline * 5 + 3
    # A non-streaming client that gives up aborts too.
    with httpx.Client(base_url=deploy_server.root_url, timeout=1.5) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            impatient.post("/v1/chat/completions", json=long)
    _wait_engine_idle(http)
    assert _metric(http, "swiftcli_num_requests_running") == 0


# --- CLI errors


def test_cli_bad_options_fail_fast(embedded_spec):
    from typer.testing import CliRunner

    from swiftcli.cli.main import app

    runner = CliRunner()
    bad = runner.invoke(app, ["deploy", "--lora_modules", "noequals"])
    assert bad.exit_code == 2 and "NAME=PATH" in bad.output and "Traceback" not in bad.output
    bad = runner.invoke(app, ["deploy", "--lora_modules", f"x={embedded_spec.model_dir}"])
    assert bad.exit_code == 2 and "adapter_config.json" in bad.output
    bad = runner.invoke(app, ["deploy", "--ssl_keyfile", "/nonexistent.key"])
    assert bad.exit_code == 2 and "--ssl-certfile" in bad.output
    bad = runner.invoke(app, ["deploy", "--port", "70000"])
    assert bad.exit_code == 2 and "port" in bad.output


def test_cli_port_in_use(deploy_server):
    from typer.testing import CliRunner

    from swiftcli.cli.main import app

    result = CliRunner().invoke(app, ["deploy", "--port", str(deploy_server.port)])
    assert result.exit_code == 2 and "cannot listen" in result.output


# --- the pt backend behind the same app (in-process, transformers on the embedded model)


def test_pt_backend_serves_chat_and_stream(pt_engine, embedded_spec):
    from swiftcli.engines.threaded import ThreadedAsyncEngine
    from swiftcli.registry.templates import get_template
    from swiftcli.server import ServerSettings, create_app

    engine = ThreadedAsyncEngine(pt_engine)
    template = get_template(embedded_spec.template_type, engine.hf_tokenizer, embedded_spec.default_system)
    app = create_app(ServerSettings(), engine=engine, template=template)
    body = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": QUESTION}],
            "temperature": 0, "max_tokens": 20}

    async def run() -> tuple[dict, str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            full = (await client.post("/v1/chat/completions", json=body)).json()
            streamed = []
            async with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as resp:
                async for line in resp.aiter_lines():
                    if line.startswith("data: {"):
                        for choice in json.loads(line[6:])["choices"]:
                            streamed.append(choice["delta"].get("content") or "")
            return full, "".join(streamed)

    full, streamed = asyncio.run(run())
    assert full["choices"][0]["message"]["content"].startswith("The capital of France is Paris")
    assert streamed == full["choices"][0]["message"]["content"]
    assert full["usage"]["completion_tokens"] > 0


# --- fast in-process checks with a stand-in engine (beside the real ones above)


class _BrokenEngine:
    """Fails inside generation, to check that an engine bug is a 500 envelope without internals."""

    backend = "fake"
    max_model_len = 64
    max_num_seqs = None
    errored = False
    lora_names: list[str] = []

    def __init__(self, spec, tokenizer):
        from swiftcli.config.spec import GenerationConfig

        self.spec, self.hf_tokenizer, self.generation_config = spec, tokenizer, GenerationConfig()
        self.vocab_size = len(tokenizer)

    def num_unfinished(self):
        return 0

    async def generate(self, request, *, guided=None):
        raise RuntimeError("secret internal detail")
        yield  # pragma: no cover

    async def aclose(self):
        pass


def test_internal_error_is_500_without_trace_and_loading_is_503(embedded_spec, template):
    from swiftcli.server import ServerSettings, create_app

    app = create_app(ServerSettings(), engine=_BrokenEngine(embedded_spec, template.tokenizer), template=template)
    loading = create_app(ServerSettings(), loader=lambda: (None, None))  # lifespan not run: never ready
    body = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}

    async def run() -> tuple[httpx.Response, ...]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            broken = await client.post("/v1/chat/completions", json=body)
            broken_stream = await client.post("/v1/chat/completions", json={**body, "stream": True})
            health = await client.get("/health")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=loading), base_url="http://t") as client:
            return broken, broken_stream, health, await client.get("/health"), await client.get("/v1/models")

    broken, broken_stream, health, loading_health, loading_models = asyncio.run(run())
    for resp in (broken, broken_stream):
        assert resp.status_code == 500
        assert resp.json()["error"]["type"] == "server_error" and "secret" not in resp.text
    assert health.status_code == 200
    assert loading_health.status_code == 503 and loading_health.json()["status"] == "loading"
    assert loading_models.status_code == 503


def test_the_in_process_server_leaves_the_process_logging_alone(embedded_spec):
    """eval's local server (for lm-eval) must not reconfigure logging: uvicorn's default setup closes every
    handler of the process, and absl's handler then closes the stream it writes to."""
    import logging
    from types import SimpleNamespace

    from swiftcli.server.local import local_server

    closed: list[str] = []

    class Recorder(logging.Handler):
        def close(self) -> None:
            closed.append("closed")
            super().close()

    class Idle:
        backend, spec, lora_names, max_model_len, max_num_seqs, vocab_size = "fake", embedded_spec, [], 128, 2, 100
        errored = False

        def num_unfinished(self):
            return 0

    logger = logging.getLogger("swiftcli.tests.recorder")
    handler = Recorder()
    logger.addHandler(handler)
    try:
        with local_server(Idle(), SimpleNamespace(template_type=embedded_spec.template_type)) as url:
            assert httpx.get(url.removesuffix("/v1") + "/health", timeout=10).status_code == 200
    finally:
        logger.removeHandler(handler)
    assert closed == []
