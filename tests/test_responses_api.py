"""POST /v1/responses on a real `swiftcli deploy` (vLLM, embedded model) through the official openai client:
plain and streamed answers (the stream read by the client's own accumulator), a function-tool round trip,
previous_response_id with the store, and the fields that are refused."""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
QUESTION = "What is the capital of France?"
WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                          "required": ["city"], "additionalProperties": False}}


@pytest.fixture(scope="module")
def client(deploy_server):
    with openai.OpenAI(base_url=deploy_server.base_url, api_key="EMPTY", max_retries=0, timeout=120) as c:
        yield c


def _chat(client: openai.OpenAI, messages: list[dict], **kwargs):
    return client.chat.completions.create(model=MODEL, messages=messages, temperature=0, **kwargs)


def test_plain_answer_is_the_chat_answer(client):
    resp = client.responses.create(model=MODEL, input=QUESTION, temperature=0, max_output_tokens=12)
    chat = _chat(client, [{"role": "user", "content": QUESTION}], max_tokens=12)
    assert resp.object == "response" and resp.id.startswith("resp_")
    assert resp.output_text == chat.choices[0].message.content
    assert resp.output[0].type == "message" and resp.output[0].role == "assistant"
    assert resp.usage.input_tokens == chat.usage.prompt_tokens
    assert resp.usage.output_tokens == chat.usage.completion_tokens
    assert resp.usage.output_tokens_details.reasoning_tokens == 0
    status = "incomplete" if chat.choices[0].finish_reason == "length" else "completed"
    assert resp.status == status
    # instructions are the system message; input items with text parts are the same messages
    items = [{"role": "user", "content": [{"type": "input_text", "text": QUESTION}]}]
    ruled = client.responses.create(model=MODEL, input=items, instructions="Answer in one word.", temperature=0,
                                    max_output_tokens=8)
    chat = _chat(client, [{"role": "system", "content": "Answer in one word."},
                          {"role": "user", "content": QUESTION}], max_tokens=8)
    assert ruled.output_text == chat.choices[0].message.content
    assert ruled.usage.input_tokens == chat.usage.prompt_tokens


def test_cut_by_length_is_incomplete_with_its_reason(client):
    resp = client.responses.create(model=MODEL, input="Write a long story about a dragon.", temperature=0,
                                   max_output_tokens=3)
    assert resp.status == "incomplete"
    assert resp.incomplete_details.reason == "max_output_tokens"
    assert resp.usage.output_tokens == 3


def test_stream_events_in_order_and_the_clients_accumulator_agrees(client):
    whole = client.responses.create(model=MODEL, input=QUESTION, temperature=0, max_output_tokens=16)
    events = list(client.responses.create(model=MODEL, input=QUESTION, temperature=0, max_output_tokens=16,
                                          stream=True))
    types = [e.type for e in events]
    assert types[:5] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added", "response.output_text.delta"]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed" if whole.status == "completed" else "response.incomplete"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == whole.output_text
    assert events[-1].response.output_text == whole.output_text
    assert events[-1].response.usage.output_tokens == whole.usage.output_tokens
    # The client's own stream helper rebuilds the response from the events (and checks their order).
    with client.responses.stream(model=MODEL, input=QUESTION, temperature=0, max_output_tokens=16) as stream:
        final = stream.get_final_response()
    assert final.output_text == whole.output_text


def test_forced_function_call_round_trip(client):
    ask = [{"role": "user", "content": "What is the weather in Paris right now?"}]
    first = client.responses.create(model=MODEL, input=ask, tools=[WEATHER],
                                    tool_choice={"type": "function", "name": "get_weather"}, temperature=0)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].call_id
    jsonschema.validate(json.loads(calls[0].arguments), WEATHER["parameters"])
    # The client sends the call back with its result, as an agent loop does.
    follow = [*ask, *[item.model_dump(exclude_none=True) for item in first.output],
              {"type": "function_call_output", "call_id": calls[0].call_id, "output": '{"temp_c": 21}'}]
    second = client.responses.create(model=MODEL, input=follow, tools=[WEATHER], temperature=0,
                                     max_output_tokens=24)
    assert second.output_text
    chat = _chat(client, [*ask, {"role": "assistant", "content": None, "tool_calls": [
        {"id": calls[0].call_id, "type": "function",
         "function": {"name": "get_weather", "arguments": calls[0].arguments}}]},
        {"role": "tool", "tool_call_id": calls[0].call_id, "content": '{"temp_c": 21}'}],
        tools=[{"type": "function", "function": {k: WEATHER[k] for k in ("name", "description", "parameters")}}],
        max_tokens=24)
    assert second.usage.input_tokens == chat.usage.prompt_tokens
    assert second.output_text == (chat.choices[0].message.content or "")


def test_streamed_function_call_arguments(client):
    events = list(client.responses.create(
        model=MODEL, input="Weather in Tokyo?", tools=[WEATHER], stream=True, temperature=0,
        tool_choice={"type": "function", "name": "get_weather"}))
    added = [e for e in events if e.type == "response.output_item.added"]
    assert [a.item.type for a in added] == ["function_call"]
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert deltas == done.arguments
    jsonschema.validate(json.loads(done.arguments), WEATHER["parameters"])
    final = events[-1].response
    assert final.output[0].arguments == done.arguments and final.output[0].call_id == added[0].item.call_id
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_previous_response_id_continues_the_stored_conversation(client, deploy_server):
    first = client.responses.create(model=MODEL, input="My name is Ada.", temperature=0, max_output_tokens=10)
    second = client.responses.create(model=MODEL, input="What is my name?", previous_response_id=first.id,
                                     temperature=0, max_output_tokens=10)
    chat = _chat(client, [{"role": "user", "content": "My name is Ada."},
                          {"role": "assistant", "content": first.output_text},
                          {"role": "user", "content": "What is my name?"}], max_tokens=10)
    assert second.usage.input_tokens == chat.usage.prompt_tokens
    assert second.output_text == chat.choices[0].message.content
    assert second.previous_response_id == first.id
    assert client.responses.retrieve(first.id).output_text == first.output_text
    # Another key sees none of it; a deleted response is gone.
    with openai.OpenAI(base_url=deploy_server.base_url, api_key="someone-else", max_retries=0) as other:
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(first.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.create(model=MODEL, input="Hi", previous_response_id=first.id, max_output_tokens=2)
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    unstored = client.responses.create(model=MODEL, input="Hi", store=False, max_output_tokens=2)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)


def test_json_schema_text_format(client):
    schema = {"type": "object", "properties": {"capital": {"type": "string", "maxLength": 20}},
              "required": ["capital"], "additionalProperties": False}
    resp = client.responses.create(model=MODEL, input=QUESTION, temperature=0, max_output_tokens=40,
                                   text={"format": {"type": "json_schema", "name": "answer", "schema": schema,
                                                    "strict": True}})
    jsonschema.validate(json.loads(resp.output_text), schema)


@pytest.mark.parametrize(("extra", "named"), [
    ({"background": True}, "background"),
    ({"tools": [{"type": "web_search"}]}, "web_search"),
    ({"include": ["message.output_text.logprobs"]}, "include"),
    ({"truncation": "auto"}, "truncation"),
    ({"prompt": {"id": "pmpt_1"}}, "prompt"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x/y.png"}]}]},
     "input_image"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "item_reference"),
    ({"reasoning": {"effort": "high"}}, "reasoning.effort"),
    ({"max_output_tokens": 10**9}, "max"),
    ({"temperature": "hot"}, "temperature"),
])
def test_unsupported_or_bad_fields_are_400_naming_them(client, extra, named):
    body = {"input": "Hi", "max_output_tokens": 4, **extra}
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model=MODEL, **body)
    assert named in info.value.message
    assert info.value.body["type"] == "invalid_request_error"


def test_reasoning_effort_none_is_accepted_on_a_model_that_never_thinks(client):
    resp = client.responses.create(model=MODEL, input="Hi", reasoning={"effort": "minimal"}, max_output_tokens=2)
    assert resp.status in ("completed", "incomplete")


def test_bad_json_and_body_limit_in_openai_shape(deploy_server):
    with httpx.Client(base_url=deploy_server.root_url, timeout=60) as http:
        resp = http.post("/v1/responses", content=b'{"input": "Hi",', headers={"content-type": "application/json"})
        assert resp.status_code == 400 and resp.json()["error"]["message"] == "the request body is not valid JSON"
        big = json.dumps({"model": MODEL, "input": "a " * (1024 * 1024 + 10)}).encode()
        resp = http.post("/v1/responses", content=big, headers={"content-type": "application/json"})
        assert resp.status_code == 413 and "error" in resp.json()


def _idle(http: httpx.Client, timeout: float = 30) -> bool:
    import re
    import time

    names = ("swiftcli_num_requests_running", "swiftcli_num_requests_waiting", "swiftcli_engine_unfinished_requests")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = http.get("/metrics").text
        if all(float(re.search(rf"^{n} ([0-9.e+-]+)$", text, re.M).group(1)) == 0 for n in names):
            return True
        time.sleep(0.2)
    return False


def test_streams_dropped_mid_answer_leave_no_engine_request(deploy_server):
    story = "Write a very long story about a dragon and a knight."
    bodies = [("/v1/responses", {"model": MODEL, "input": story, "max_output_tokens": 2000, "stream": True}),
              ("/v1/messages", {"model": MODEL, "max_tokens": 2000, "stream": True,
                                "messages": [{"role": "user", "content": story}]})]
    with httpx.Client(base_url=deploy_server.root_url, timeout=120) as http:
        for _ in range(3):
            clients = [httpx.Client(base_url=deploy_server.root_url, timeout=120) for _ in bodies]
            streams = [c.stream("POST", path, json=body) for c, (path, body) in zip(clients, bodies, strict=True)]
            for stream in streams:
                lines = stream.__enter__().iter_lines()
                while "delta" not in next(lines):  # the answer has begun
                    pass
            for stream, c in zip(streams, clients, strict=True):
                stream.__exit__(None, None, None)
                c.close()
        assert _idle(http), "requests leaked after dropped streams"
        assert http.post("/v1/responses", json={"model": MODEL, "input": "Hi", "max_output_tokens": 2}).status_code \
            == 200
