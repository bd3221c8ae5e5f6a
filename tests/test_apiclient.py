"""`swiftcli.apiclient`, the one OpenAI client, against a real HTTP server on 127.0.0.1 that records what it gets:
model discovery, the key (given or from SWIFTCLI_API_KEY), refused connections tried again, a refusal in the
server's own words, and a stream folded into text and usage; the terminal's and the page's server paths use it."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from recording_server import MODEL, REPLY, RecordingServer

from swiftcli.apiclient import CONNECT_RETRIES, connect_api, reply_message
from swiftcli.errors import EngineError, InputError, UsageError
from swiftcli.generation.remote import RemoteModel


def test_discovery_finds_the_model_its_context_and_chat_sampling():
    with RecordingServer() as server:
        server.chat_sampling = {"temperature": 0.0, "repetition_penalty": 1.1}
        target = connect_api(server.url.removesuffix("/v1"))  # /v1 is added when that is what answers
        assert (target.base_url, target.model, target.max_model_len) == (server.url, MODEL, 2048)
        assert target.chat_sampling == {"temperature": 0.0, "repetition_penalty": 1.1}
        with pytest.raises(InputError, match="does not serve 'other'") as info:
            connect_api(server.url, model="other")
        assert info.value.hint == f"it serves: {MODEL}"
    with pytest.raises(UsageError, match="--eval-url must be an http"):
        connect_api("127.0.0.1:8000", url_option="--eval-url")


def test_the_key_comes_from_the_caller_or_the_environment(monkeypatch):
    monkeypatch.delenv("SWIFTCLI_API_KEY", raising=False)
    with RecordingServer(key="sesame") as server:
        with pytest.raises(EngineError, match="needs a valid API key") as info:
            connect_api(server.url, key_option="--eval-token")
        assert info.value.hint == "pass the server's key with --eval-token"
        with pytest.raises(EngineError, match="refused the API key"):
            connect_api(server.url, "wrong")
        assert connect_api(server.url, "sesame").model == MODEL
        monkeypatch.setenv("SWIFTCLI_API_KEY", "sesame")
        remote = RemoteModel.connect(server.url)
        try:
            assert remote.answer({"query": "Capital?"}, {}).response == REPLY
        finally:
            remote.close()
        assert server.headers[-1]["authorization"] == "Bearer sesame"


def test_a_refused_connection_is_tried_again_then_reported():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: every connection is refused
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        start = time.perf_counter()
        with pytest.raises(EngineError, match=f"cannot reach {url}"):
            connect_api(url)
        # httpx waits 0.5 s before the second retry: a single attempt would fail at once.
        assert CONNECT_RETRIES == 2 and time.perf_counter() - start >= 0.5


def test_a_refusal_is_a_swift_error_in_the_servers_words_and_is_not_resent():
    with RecordingServer() as server:
        remote = RemoteModel.connect(server.url)
        try:
            server.refuse = (400, "max_tokens is too large for this model\nsecond line")
            with pytest.raises(InputError, match="^the server refused the request: max_tokens is too large for "
                                                 "this model$"):
                remote.answer({"query": "Capital?"}, {"max_new_tokens": 9})
            server.refuse = (503, "busy")
            with pytest.raises(InputError, match="busy"):
                remote.answer({"query": "Capital?"}, {})
            assert len(server.bodies) == 2, "a request the server answered is never sent twice"
        finally:
            remote.close()
    assert reply_message(400, {"error": {"message": "bad prompt"}}) == "server answered 400: bad prompt"
    assert reply_message(502, None, "<html>gateway</html>") == "server answered 502: <html>gateway</html>"


def test_a_stream_folds_into_text_usage_and_finish_reason():
    with RecordingServer() as server:
        remote = RemoteModel.connect(server.url)
        try:
            steps = list(remote.stream({"query": "Capital?", "system": "Be brief."}, {"temperature": 0.5}))
        finally:
            remote.close()
        assert [s.text for s in steps] == ["Paris", "Paris.", "Paris."]
        last = steps[-1]
        assert last.finished and (last.output_tokens, last.prompt_tokens, last.finish_reason) == (2, 7, "stop")
        body = server.bodies[-1]
        assert body["stream"] is True and body["temperature"] == 0.5
        assert body["messages"][0] == {"role": "system", "content": "Be brief."}


def test_the_pages_server_backend_sends_its_controls_by_the_one_rule():
    from swiftcli.config.spec import GenerationConfig
    from swiftcli.webui.backends import ChatSettings, OpenAIChatBackend

    async def answer(backend: OpenAIChatBackend, settings: ChatSettings) -> list[str]:
        try:
            return [p.text async for p in backend.chat("Capital?", [("Hi", "Hello!")], settings)]
        finally:
            await backend.aclose()

    with RecordingServer() as server:
        base = GenerationConfig(seed=5, stop=["END"])
        greedy = ChatSettings(system="", temperature=0.0, top_p=0.8, max_new_tokens=40, top_k=3)
        backend = OpenAIChatBackend(server.url, "EMPTY", MODEL, base, extra_body={"repetition_penalty": 1.1})
        assert asyncio.run(answer(backend, greedy))[-1] == REPLY
        body = server.bodies[-1]
        assert (body["temperature"], body["max_tokens"], body["seed"], body["stop"]) == (0.0, 40, 5, ["END"])
        assert body["repetition_penalty"] == 1.1 and body["top_k"] == 3, "the page's and the command line's"
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
        sampled = ChatSettings(system="Be brief.", temperature=0.7, top_p=0.8, max_new_tokens=40, top_k=3)
        backend = OpenAIChatBackend(server.url, "EMPTY", MODEL, base)
        asyncio.run(answer(backend, sampled))
        body = server.bodies[-1]
        assert (body["temperature"], body["top_p"], body["top_k"]) == (0.7, 0.8, 3)
