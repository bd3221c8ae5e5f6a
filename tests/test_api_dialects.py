"""`--api_dialect responses|messages`: infer, chat and the chat page's backend ask a server through OpenAI's
Responses API or Anthropic's Messages API (official clients), sending exactly the sampling the user typed and
refusing by name what the API has no field for; against recording servers that speak only that API, and against
the live `swiftcli deploy`."""

from __future__ import annotations

import asyncio

import pytest
from recording_server import MODEL, REPLY, RecordingServer
from typer.testing import CliRunner

from swiftcli.cli.main import app

FRANCE = "What is the capital of France?"
TYPED = ["--temperature", "0.5", "--top_p", "0.8", "--max_new_tokens", "9"]


def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> object:
    return CliRunner().invoke(app, list(args), input=input, env={"COLUMNS": "200", **(env or {})})


# ---- engine-free: recording servers that speak one API only ----


def test_messages_sends_exactly_the_typed_sampling_with_x_api_key():
    with RecordingServer(key="sesame", only="messages") as server:
        result = invoke("infer", "--api_url", server.url, "--api_dialect", "messages", "--api_key", "sesame",
                        "--system", "Be brief.", *TYPED, "--top_k", "7", "--stop", "END", "--query", FRANCE)
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == REPLY
        assert server.bodies == [{"model": MODEL, "messages": [{"role": "user", "content": FRANCE}],
                                  "system": "Be brief.", "max_tokens": 9, "temperature": 0.5, "top_p": 0.8,
                                  "top_k": 7, "stop_sequences": ["END"], "stream": False}]
        assert all(h.get("x-api-key") == "sesame" for h in server.headers)
    with RecordingServer(only="messages") as server:
        # The default dialect asks /v1/chat/completions, which this server does not serve.
        result = invoke("infer", "--api_url", server.url, "--query", FRANCE)
        assert result.exit_code == 1 and "the server refused the request: not found" in result.output, result.output


def test_messages_refuses_what_it_cannot_carry_by_name_before_sending():
    with RecordingServer(only="messages") as server:
        for option, value in (("--seed", "3"), ("--repetition_penalty", "1.2")):
            result = invoke("infer", "--api_url", server.url, "--api_dialect", "messages", option, value,
                            "--query", FRANCE)
            assert result.exit_code == 2, result.output
            assert f"--api-dialect messages has no field for {option.replace('_', '-')}" in result.output
            assert "Traceback" not in result.output
        assert server.bodies == [] and server.headers == [], "refused before connecting"


def test_messages_sends_greedy_and_a_max_tokens_when_none_is_typed():
    with RecordingServer(only="messages") as server:
        result = invoke("infer", "--api_url", server.url, "--api_dialect", "messages", "--query", FRANCE, "-o", "json")
        assert result.exit_code == 0, result.output
        assert '"finish_reason": "stop"' in result.stdout and '"completion_tokens": 2' in result.stdout
        body = server.bodies[-1]
        # infer is greedy; Anthropic requires max_tokens: half the listed context (none listed here: 2048).
        assert body["temperature"] == 0.0 and body["max_tokens"] == 2048 and "top_k" not in body


def test_responses_sends_exactly_the_typed_sampling_and_refuses_the_rest():
    with RecordingServer(only="responses") as server:
        result = invoke("infer", "--api_url", server.url, "--api_dialect", "responses", "--system", "Be brief.",
                        *TYPED, "--query", FRANCE)
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == REPLY
        assert server.bodies == [{"model": MODEL, "input": [{"role": "user", "content": FRANCE}],
                                  "instructions": "Be brief.", "store": False, "stream": False,
                                  "max_output_tokens": 9, "temperature": 0.5, "top_p": 0.8}]
        for option, value in (("--seed", "3"), ("--top_k", "5"), ("--stop", "END")):
            result = invoke("infer", "--api_url", server.url, "--api_dialect", "responses", option, value,
                            "--query", FRANCE)
            assert result.exit_code == 2, result.output
            assert f"--api-dialect responses has no field for {option.replace('_', '-')}" in result.output
        assert len(server.bodies) == 1


@pytest.mark.parametrize("dialect", ["responses", "messages"])
def test_chat_streams_through_the_dialect(dialect):
    with RecordingServer(only=dialect) as server:
        result = invoke("chat", "--api_url", server.url, "--api_dialect", dialect, "--no-markdown",
                        input=f"{FRANCE}\n/set seed 4\nAgain?\n/exit\n")
        assert result.exit_code == 0, result.output
        assert f"({dialect} API)" in result.output and REPLY in result.output
        assert "2 tokens" in result.output, "the server's usage"
        assert f"--api-dialect {dialect} has no field for --seed" in result.output, "a /set it cannot carry"
        assert len(server.bodies) == 1 and server.bodies[0]["stream"] is True


def test_messages_thinking_comes_back_in_think_tags_whole_and_streamed():
    from swiftcli.generation.remote import RemoteModel

    with RecordingServer(only="messages") as server:
        server.thinking = "France's capital."
        remote = RemoteModel.connect(server.url, dialect="messages")
        try:
            whole = remote.answer({"query": FRANCE}, {"max_new_tokens": 5})
            streamed = list(remote.stream({"query": FRANCE}, {"max_new_tokens": 5}))
        finally:
            remote.close()
        expected = f"<think>\nFrance's capital.\n</think>\n\n{REPLY}"
        assert whole.response == expected and (whole.prompt_tokens, whole.output_tokens) == (7, 2)
        assert streamed[-1].text == expected and streamed[-1].finished and streamed[-1].finish_reason == "stop"
        assert [p.text for p in streamed[:-1]][0] == "<think>\nFrance's capital."


def test_dialect_needs_api_url_and_comes_from_the_environment():
    result = invoke("infer", "--api_dialect", "messages", "--query", FRANCE)
    assert result.exit_code == 2 and "--api-dialect applies to --api-url" in result.output, result.output
    result = invoke("infer", "--api_dialect", "grpc", "--query", FRANCE)
    assert result.exit_code == 2 and "'grpc' is not one of chat, responses, messages" in result.output
    with RecordingServer(only="responses") as server:
        result = invoke("infer", "--api_url", server.url, "--query", FRANCE, env={"SWIFTCLI_API_DIALECT": "responses"})
        assert result.exit_code == 0 and result.stdout.strip() == REPLY, result.output


def test_the_pages_backend_speaks_messages():
    from swiftcli.config.spec import GenerationConfig
    from swiftcli.webui.backends import ApiChatBackend, ChatSettings

    async def answer(backend: ApiChatBackend, settings: ChatSettings) -> list[str]:
        try:
            return [p.text async for p in backend.chat("Capital?", [("Hi", "Hello!")], settings)]
        finally:
            await backend.aclose()

    with RecordingServer(only="messages") as server:
        base = GenerationConfig(stop=["END"])
        settings = ChatSettings(system="Be brief.", temperature=0.7, top_p=0.8, max_new_tokens=40, top_k=3,
                                repetition_penalty=1.0)
        backend = ApiChatBackend(server.url, "EMPTY", MODEL, base, dialect="messages")
        assert asyncio.run(answer(backend, settings))[-1] == REPLY
        body = server.bodies[-1]
        assert {k: body[k] for k in ("system", "temperature", "top_p", "top_k", "max_tokens", "stop_sequences")} == {
            "system": "Be brief.", "temperature": 0.7, "top_p": 0.8, "top_k": 3, "max_tokens": 40,
            "stop_sequences": ["END"]}
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
        # A control moved off its neutral value that the API has no field for is refused, not dropped.
        pushed = ChatSettings(system=None, temperature=0.7, top_p=0.8, max_new_tokens=40, repetition_penalty=1.3)
        backend = ApiChatBackend(server.url, "EMPTY", MODEL, base, dialect="messages")
        with pytest.raises(Exception, match="has no field for --repetition_penalty"):
            asyncio.run(answer(backend, pushed))
        assert len(server.bodies) == 1


# ---- against the live session server ----


@pytest.mark.parametrize("dialect", ["responses", "messages"])
def test_infer_and_chat_through_deploys_dialect_routes(deploy_server, dialect):
    url = deploy_server.root_url if dialect == "messages" else deploy_server.base_url
    result = invoke("infer", "--api_url", url, "--api_dialect", dialect, "--query", FRANCE, "--max_new_tokens", "32",
                    "-o", "json")
    assert result.exit_code == 0, result.output
    assert "Paris" in result.stdout and '"completion_tokens": 0' not in result.stdout, result.stdout
    script = "\n".join([FRANCE, "/stats", "/exit"]) + "\n"
    result = invoke("chat", "--api_url", url, "--api_dialect", dialect, "--no-markdown", "--max_new_tokens", "32",
                    input=script)
    assert result.exit_code == 0, result.output
    assert f"({dialect} API)" in result.output and "Paris" in result.output and "tok/s" in result.output
    # deploy lists a repetition guard for the model; neither API has a field for it, so it stays the server's.
    assert "repetition_penalty" not in result.output.split("Sampling:")[1].splitlines()[0]
    assert "Traceback" not in result.output


def test_the_pages_messages_backend_against_deploy(deploy_server):
    from swiftcli.cli.app_ui import api_backend
    from swiftcli.config.options import ModelOptions
    from swiftcli.config.spec import EngineConfig, GenerationOverrides

    backend, defaults = api_backend(deploy_server.root_url, None, ModelOptions(), EngineConfig(),
                                    GenerationOverrides(), "messages")
    assert defaults.repetition_penalty == 1.0, "no field for it: the control starts neutral"

    async def answer() -> list[object]:
        from swiftcli.webui.backends import ChatSettings

        settings = ChatSettings(system=None, temperature=0.0, top_p=defaults.top_p, max_new_tokens=32,
                                top_k=defaults.top_k, repetition_penalty=defaults.repetition_penalty)
        try:
            return [p async for p in backend.chat(FRANCE, [], settings)]
        finally:
            await backend.aclose()

    progress = asyncio.run(answer())
    assert "Paris" in progress[-1].text and progress[-1].finished and progress[-1].finish_reason == "stop"
    assert progress[-1].tokens > 0
