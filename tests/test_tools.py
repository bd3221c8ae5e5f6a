"""Tool calling, structured outputs and the vLLM sampling fields on a real `swiftcli deploy` (vLLM, embedded
model), through the official openai client."""

from __future__ import annotations

import json
import re

import httpx
import openai
import pytest

MODEL = "smollm2-135m-instruct"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                   "required": ["city"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Local time in a time zone",
    "parameters": {"type": "object",
                   "properties": {"timezone": {"type": "string", "enum": ["Europe/Paris", "Asia/Tokyo"]},
                                  "hour24": {"type": "boolean"}},
                   "required": ["timezone", "hour24"], "additionalProperties": False}}}
ASK = [{"role": "user", "content": "What is the weather in Paris right now?"}]


@pytest.fixture(scope="module")
def client(deploy_server):
    with openai.OpenAI(base_url=deploy_server.base_url, api_key="EMPTY", max_retries=0, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def template(embedded_spec):
    from transformers import AutoTokenizer

    from swiftcli.registry.templates import get_template

    tokenizer = AutoTokenizer.from_pretrained(embedded_spec.model_dir)
    return get_template(embedded_spec.template_type, tokenizer, embedded_spec.default_system)


def _chat(client, messages=ASK, **kwargs):
    kwargs.setdefault("temperature", 0)
    kwargs.setdefault("max_tokens", 60)
    return client.chat.completions.create(model=MODEL, messages=messages, **kwargs)


def test_required_returns_a_valid_call(client):
    resp = _chat(client, tools=[WEATHER, TIME], tool_choice="required")
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls and all(c.type == "function" and c.id.startswith("call_") for c in calls)
    for call in calls:
        args = json.loads(call.function.arguments)
        if call.function.name == "get_weather":
            assert set(args) == {"city"} and isinstance(args["city"], str)
        else:
            assert call.function.name == "get_time" and args["timezone"] in ("Europe/Paris", "Asia/Tokyo")


def test_required_single_call_without_parallel_calls(client):
    resp = _chat(client, tools=[WEATHER, TIME], tool_choice="required", parallel_tool_calls=False)
    assert len(resp.choices[0].message.tool_calls) == 1


def test_named_call_follows_the_schema(client):
    resp = _chat(client, tools=[WEATHER, TIME], tool_choice={"type": "function", "function": {"name": "get_time"}})
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_time"
    args = json.loads(call.function.arguments)
    assert set(args) == {"timezone", "hour24"}
    assert args["timezone"] in ("Europe/Paris", "Asia/Tokyo") and isinstance(args["hour24"], bool)


def test_none_renders_no_tools_and_parses_none(client):
    plain = _chat(client, max_tokens=8)
    none = _chat(client, tools=[WEATHER], tool_choice="none", max_tokens=8)
    auto = _chat(client, tools=[WEATHER], max_tokens=8)
    assert none.usage.prompt_tokens == plain.usage.prompt_tokens
    assert none.choices[0].message.content == plain.choices[0].message.content
    assert none.choices[0].message.tool_calls is None
    assert auto.usage.prompt_tokens > plain.usage.prompt_tokens + 40  # the tool's schema is in the prompt


def test_auto_parses_hermes_calls_from_the_model(client):
    # The 135M model rarely calls a tool by itself: a regex makes it write one in the hermes format, which the
    # server's default parser (hermes) must turn into a call.
    pattern = r'<tool_call>\n\{"name": "get_weather", "arguments": \{"city": "(Paris|Lyon)"\}\}\n</tool_call>'
    resp = _chat(client, tools=[WEATHER], extra_body={"structured_outputs": {"regex": pattern}})
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["city"] in ("Paris", "Lyon")
    with client.chat.completions.stream(model=MODEL, messages=ASK, tools=[WEATHER], temperature=0,
                                        max_tokens=60, extra_body={"structured_outputs": {"regex": pattern}}
                                        ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.arguments == call.function.arguments


def test_round_trip_with_a_tool_message(client, template):
    from swiftcli.registry.conversation import encode_messages

    first = _chat(client, tools=[WEATHER], tool_choice="required")
    call = first.choices[0].message.tool_calls[0]
    messages = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                {"role": "tool", "tool_call_id": call.id, "content": '{"temperature_c": 18, "sky": "sunny"}'}]
    resp = _chat(client, messages=messages, tools=[WEATHER], tool_choice="none", max_tokens=30)
    assert resp.choices[0].message.content and resp.choices[0].message.tool_calls is None
    expected = encode_messages(template, messages)
    assert resp.usage.prompt_tokens == len(expected)
    text = template.tokenizer.decode(expected)
    assert "<tool_response>\n{\"temperature_c\": 18" in text and "<tool_call>\n{\"name\": \"get_weather\"" in text


def test_streamed_call_is_assembled_by_the_client(client, deploy_server):
    named = {"type": "function", "function": {"name": "get_time"}}
    with client.chat.completions.stream(model=MODEL, messages=ASK, tools=[WEATHER, TIME], tool_choice=named,
                                        temperature=0, max_tokens=60) as stream:
        final = stream.get_final_completion()
    whole = _chat(client, tools=[WEATHER, TIME], tool_choice=named)
    streamed_call = final.choices[0].message.tool_calls[0]
    assert final.choices[0].finish_reason == "tool_calls"
    assert streamed_call.function.name == "get_time"
    assert streamed_call.function.arguments == whole.choices[0].message.tool_calls[0].function.arguments
    # OpenAI's order: index, id and name first, then argument fragments.
    body = {"model": MODEL, "messages": ASK, "tools": [WEATHER, TIME], "tool_choice": "required",
            "temperature": 0, "max_tokens": 60, "stream": True}
    deltas = []
    with httpx.stream("POST", f"{deploy_server.base_url}/chat/completions", json=body, timeout=120) as resp:
        for line in resp.iter_lines():
            if line.startswith("data: {"):
                for choice in json.loads(line[6:])["choices"]:
                    deltas += choice["delta"].get("tool_calls") or []
    assert deltas[0]["id"] and deltas[0]["function"]["name"] and deltas[0]["index"] == 0
    fragments = [d["function"]["arguments"] for d in deltas if d["index"] == 0 and "arguments" in d["function"]]
    assert len(fragments) > 2 and json.loads("".join(fragments))


@pytest.mark.parametrize("extra", [
    {"structured_outputs": {"regex": r"(Paris|Lyon|Nice) is in France\."}},
    {"guided_regex": r"(Paris|Lyon|Nice) is in France\."},
])
def test_regex_output_matches(client, extra):
    content = _chat(client, extra_body=extra).choices[0].message.content
    assert re.fullmatch(r"(Paris|Lyon|Nice) is in France\.", content)


@pytest.mark.parametrize("extra", [
    {"structured_outputs": {"choice": ["Paris", "Berlin", "Madrid"]}},
    {"guided_choice": ["Paris", "Berlin", "Madrid"]},
    {"structured_outputs": {"grammar": 'root ::= "Paris" | "Berlin" | "Madrid"'}},
    {"guided_grammar": 'root ::= "Paris" | "Berlin" | "Madrid"'},
])
def test_choice_and_grammar_outputs_match(client, extra):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    content = _chat(client, messages=messages, extra_body=extra).choices[0].message.content
    assert content in ("Paris", "Berlin", "Madrid")


def test_streamed_choice(client):
    stream = _chat(client, stream=True, extra_body={"guided_choice": ["yes", "no"]})
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) in ("yes", "no")


def test_sampling_fields_change_the_output(client, template):
    greedy = _chat(client, max_tokens=12)
    text = greedy.choices[0].message.content
    # min_p=1 keeps only the most likely token: sampling at temperature 1 is greedy then.
    assert _chat(client, max_tokens=12, temperature=1, seed=3, extra_body={"min_p": 1.0}).choices[0] \
        .message.content == text
    first = template.tokenizer.encode(text, add_special_tokens=False)[0]
    stopped = _chat(client, max_tokens=12, extra_body={"stop_token_ids": [first]})
    assert stopped.usage.completion_tokens == 1 and stopped.choices[0].finish_reason == "stop"
    banned = _chat(client, max_tokens=12, logit_bias={str(first): -100})
    assert template.tokenizer.encode(banned.choices[0].message.content, add_special_tokens=False)[0] != first
    long = _chat(client, max_tokens=12, extra_body={"min_tokens": 12, "stop_token_ids": [first]})
    assert long.usage.completion_tokens == 12
    word = text.split()[1]
    kept = _chat(client, max_tokens=12, stop=[word], extra_body={"include_stop_str_in_output": True})
    assert kept.choices[0].message.content.endswith(word)
    assert _chat(client, max_completion_tokens=3).usage.completion_tokens == 3


def test_fields_we_cannot_honour_are_refused_by_name(client):
    for extra in ({"best_of": 2}, {"use_beam_search": True}, {"functions": [WEATHER["function"]]},
                  {"structured_outputs": {"regex": "a", "choice": ["a"]}},
                  {"guided_regex": "a", "guided_choice": ["a"]},
                  {"chat_template_kwargs": {"enable_thinking": True}}):
        with pytest.raises(openai.BadRequestError) as info:
            _chat(client, max_tokens=2, extra_body=extra)
        assert next(iter(extra)) in str(info.value) or "thinking" in str(info.value)
    with pytest.raises(openai.BadRequestError, match="not in tools"):
        _chat(client, tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}})
    with pytest.raises(openai.BadRequestError, match="tool_choice"):
        _chat(client, tool_choice="required")
    ok = _chat(client, max_tokens=2, user="u-1", metadata={"k": "v"}, store=False)
    assert ok.choices[0].message.content
    # Clients send enable_thinking false to every model; on one that never thinks it is already honoured.
    off = _chat(client, max_tokens=2, extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    assert off.choices[0].message.content


def test_client_api_tools(deploy_server):
    from swiftcli import XRequestConfig, inference_client

    port = deploy_server.port
    resp = inference_client(MODEL, "What is the weather in Paris?", port=port, tools=[WEATHER],
                            tool_choice="required", request_config=XRequestConfig(temperature=0, max_tokens=60))
    assert resp.choices[0].message.tool_calls[0].function.name == "get_weather"
    resp = inference_client(MODEL, "Capital of France?", port=port, request_config=XRequestConfig(
        temperature=0, max_tokens=5, structured_outputs={"choice": ["Paris", "Rome"]}))
    assert resp.choices[0].message.content in ("Paris", "Rome")
