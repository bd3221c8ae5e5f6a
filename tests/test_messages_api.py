"""POST /v1/messages and /v1/messages/count_tokens on a real `swiftcli deploy` (vLLM, embedded model) through the
official anthropic client: plain, system, streamed (read by the client's own accumulator), a forced tool_use
round trip, stop sequences, token counts, and errors in Anthropic's shape."""

from __future__ import annotations

import json

import anthropic
import httpx
import jsonschema
import openai
import pytest

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
QUESTION = "What is the capital of France?"
WEATHER = {"name": "get_weather", "description": "Current weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                            "required": ["city"], "additionalProperties": False}}
ASK = [{"role": "user", "content": "What is the weather in Paris right now?"}]
# The client dropped temperature/top_p/top_k from its signature (newer Claude models refuse them); the API still
# takes them, so they go in the body.
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def claude(deploy_server):
    with anthropic.Anthropic(base_url=deploy_server.root_url, api_key="EMPTY", max_retries=0, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def oai(deploy_server):
    with openai.OpenAI(base_url=deploy_server.base_url, api_key="EMPTY", max_retries=0, timeout=120) as c:
        yield c


def _chat(oai: openai.OpenAI, messages: list[dict], **kwargs):
    return oai.chat.completions.create(model=MODEL, messages=messages, extra_body=GREEDY, **kwargs)


def _text(message) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


def _blocks(message) -> list[dict]:
    return [b.model_dump(exclude_none=True, exclude={"parsed_output"}) for b in message.content]


def test_plain_and_system_answers_are_the_chat_answers(claude, oai):
    msg = claude.messages.create(model=MODEL, max_tokens=12, extra_body=GREEDY,
                                 messages=[{"role": "user", "content": QUESTION}])
    chat = _chat(oai, [{"role": "user", "content": QUESTION}], max_tokens=12)
    assert msg.type == "message" and msg.role == "assistant" and msg.id.startswith("msg_")
    assert _text(msg) == chat.choices[0].message.content
    assert msg.usage.input_tokens == chat.usage.prompt_tokens
    assert msg.usage.output_tokens == chat.usage.completion_tokens
    assert msg.stop_reason == ("max_tokens" if chat.choices[0].finish_reason == "length" else "end_turn")
    system = [{"type": "text", "text": "You are a geography teacher."}]
    taught = claude.messages.create(model=MODEL, max_tokens=12, extra_body=GREEDY, system=system,
                                    messages=[{"role": "user", "content": [{"type": "text", "text": QUESTION}]}])
    chat = _chat(oai, [{"role": "system", "content": "You are a geography teacher."},
                       {"role": "user", "content": QUESTION}], max_tokens=12)
    assert _text(taught) == chat.choices[0].message.content
    assert taught.usage.input_tokens == chat.usage.prompt_tokens


def test_stream_events_and_the_clients_accumulator(claude, deploy_server):
    whole = claude.messages.create(model=MODEL, max_tokens=16, extra_body=GREEDY,
                                   messages=[{"role": "user", "content": QUESTION}])
    with claude.messages.stream(model=MODEL, max_tokens=16, extra_body=GREEDY,
                                messages=[{"role": "user", "content": QUESTION}]) as stream:
        streamed_text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed_text == _text(whole)
    assert _blocks(final) == _blocks(whole)
    assert (final.stop_reason, final.usage.input_tokens, final.usage.output_tokens) == (
        whole.stop_reason, whole.usage.input_tokens, whole.usage.output_tokens)
    raw = list(claude.messages.create(model=MODEL, max_tokens=16, extra_body=GREEDY, stream=True,
                                      messages=[{"role": "user", "content": QUESTION}]))
    types = [e.type for e in raw]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(types[2:-3]) == {"content_block_delta"}
    # ping is part of the wire stream (the client drops it)
    with httpx.Client(base_url=deploy_server.root_url, timeout=60) as http:
        body = http.post("/v1/messages", json={"model": MODEL, "max_tokens": 2, "stream": True,
                                               "messages": [{"role": "user", "content": "Hi"}]}).text
    assert "event: ping\n" in body and body.startswith("event: message_start\n")


def test_forced_tool_use_round_trip(claude, oai):
    first = claude.messages.create(model=MODEL, max_tokens=64, extra_body=GREEDY, messages=ASK, tools=[WEATHER],
                                   tool_choice={"type": "tool", "name": "get_weather"})
    assert first.stop_reason == "tool_use"
    uses = [b for b in first.content if b.type == "tool_use"]
    assert len(uses) == 1 and uses[0].name == "get_weather" and uses[0].id
    jsonschema.validate(uses[0].input, WEATHER["input_schema"])
    # streamed, the client rebuilds the same input from input_json_delta events
    with claude.messages.stream(model=MODEL, max_tokens=64, extra_body=GREEDY, messages=ASK, tools=[WEATHER],
                                tool_choice={"type": "tool", "name": "get_weather"}) as stream:
        streamed = stream.get_final_message()
    assert [b.input for b in streamed.content if b.type == "tool_use"] == [uses[0].input]
    follow = [*ASK, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id,
                                            "content": '{"temp_c": 21}'}]}]
    second = claude.messages.create(model=MODEL, max_tokens=24, extra_body=GREEDY, messages=follow, tools=[WEATHER])
    tool = {"type": "function", "function": {"name": "get_weather", "description": WEATHER["description"],
                                             "parameters": WEATHER["input_schema"]}}
    chat = _chat(oai, [*ASK, {"role": "assistant", "content": None, "tool_calls": [
        {"id": uses[0].id, "type": "function", "function": {"name": "get_weather",
                                                            "arguments": json.dumps(uses[0].input)}}]},
        {"role": "tool", "tool_call_id": uses[0].id, "content": '{"temp_c": 21}'}], tools=[tool], max_tokens=24)
    assert second.usage.input_tokens == chat.usage.prompt_tokens
    assert _text(second) == (chat.choices[0].message.content or "")
    count = claude.messages.count_tokens(model=MODEL, messages=follow, tools=[WEATHER])
    assert count.input_tokens == second.usage.input_tokens


def test_stop_sequences(claude):
    free = claude.messages.create(model=MODEL, max_tokens=16, extra_body=GREEDY,
                                  messages=[{"role": "user", "content": QUESTION}])
    word = _text(free).split()[2]
    stopped = claude.messages.create(model=MODEL, max_tokens=16, extra_body=GREEDY, stop_sequences=["zzqx", word],
                                     messages=[{"role": "user", "content": QUESTION}])
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == word
    assert _text(stopped) == _text(free)[:_text(free).index(word)]
    with claude.messages.stream(model=MODEL, max_tokens=16, extra_body=GREEDY, stop_sequences=[word],
                                messages=[{"role": "user", "content": QUESTION}]) as stream:
        final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", word)


def test_output_config_json_schema(claude):
    schema = {"type": "object", "properties": {"capital": {"type": "string", "maxLength": 20}},
              "required": ["capital"], "additionalProperties": False}
    msg = claude.messages.create(model=MODEL, max_tokens=40, extra_body=GREEDY,
                                 output_config={"format": {"type": "json_schema", "schema": schema}},
                                 messages=[{"role": "user", "content": QUESTION}])
    jsonschema.validate(json.loads(_text(msg)), schema)


def test_count_tokens_is_the_prompt_length(claude, oai):
    messages = [{"role": "user", "content": QUESTION}]
    count = claude.messages.count_tokens(model=MODEL, messages=messages, system="Be brief.")
    chat = _chat(oai, [{"role": "system", "content": "Be brief."}, *messages], max_tokens=1)
    assert count.input_tokens == chat.usage.prompt_tokens


def test_thinking_disabled_accepted_enabled_refused_on_a_model_that_never_thinks(claude):
    ok = claude.messages.create(model=MODEL, max_tokens=2, thinking={"type": "disabled"},
                                messages=[{"role": "user", "content": "Hi"}])
    assert ok.content
    with pytest.raises(anthropic.BadRequestError, match="thinking"):
        claude.messages.create(model=MODEL, max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 1024},
                               messages=[{"role": "user", "content": "Hi"}])


HOSTILE = [
    ({"messages": [{"role": "user", "content": "Hi"}]}, "max_tokens"),  # max_tokens missing
    ({"max_tokens": "many", "messages": [{"role": "user", "content": "Hi"}]}, "max_tokens"),
    ({"max_tokens": 10**9, "messages": [{"role": "user", "content": "Hi"}]}, "max"),
    ({"max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}], "mcp_servers": []}, "mcp_servers"),
    ({"max_tokens": 4, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}]}]}, "image"),
    ({"max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}],
      "tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "web_search"),
    ({"max_tokens": 4, "messages": [{"role": "user", "content": "Hi \ud800"}]}, "surrogate"),
    ({"max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}], "stop_sequences": list("abcde")}, "stop"),
    ({"max_tokens": 4, "messages": [{"role": "robot", "content": "Hi"}]}, "role"),
]


@pytest.mark.parametrize(("body", "named"), HOSTILE, ids=[n for _, n in HOSTILE])
def test_bad_requests_are_400_in_anthropic_shape(deploy_server, body, named):
    with httpx.Client(base_url=deploy_server.root_url, timeout=60) as http:
        resp = http.post("/v1/messages", content=json.dumps({"model": MODEL, **body}).encode(),
                         headers={"content-type": "application/json"})
    assert resp.status_code == 400, resp.text
    error = resp.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert named in error["error"]["message"]
    assert "Traceback" not in resp.text and "/root" not in resp.text and "site-packages" not in resp.text


def test_unknown_model_bad_json_and_oversize_body_in_anthropic_shape(claude, deploy_server):
    with pytest.raises(anthropic.NotFoundError) as info:
        claude.messages.create(model="claude-nope", max_tokens=4, messages=[{"role": "user", "content": "Hi"}])
    assert info.value.body["error"]["type"] == "not_found_error"
    with httpx.Client(base_url=deploy_server.root_url, timeout=60) as http:
        resp = http.post("/v1/messages", content=b'{"model": ', headers={"content-type": "application/json"})
        assert resp.status_code == 400 and resp.json()["type"] == "error"
        big = json.dumps({"model": MODEL, "max_tokens": 1,
                          "messages": [{"role": "user", "content": "a " * (1024 * 1024 + 10)}]}).encode()
        resp = http.post("/v1/messages/count_tokens", content=big, headers={"content-type": "application/json"})
        assert resp.status_code == 413 and resp.json()["error"]["type"] == "request_too_large"
