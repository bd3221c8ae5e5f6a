"""Fast checks of /v1/responses and /v1/messages without an engine start: the stored-response bounds, the key
gate (Bearer or x-api-key) with each route's error shape, and the reasoning path (a reasoning parser the embedded
model does not use) through a scripted engine on the embedded model's real tokenizer and template. The real
engine runs in test_responses_api.py and test_messages_api.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace

import anthropic
import openai
import pytest
from fastapi.testclient import TestClient

from swiftcli.engines.base import Completion, EngineRequest, RequestResult
from swiftcli.server.app import ServerSettings, create_app
from swiftcli.server.response_store import ResponseStore

MODEL = "smollm2-135m-instruct"
ANSWER = "<think>\nParis is the capital.\n</think>\n\nParis."


def test_store_is_bounded_by_count_and_bytes_and_keyed_by_api_key():
    store = ResponseStore(max_responses=3, max_bytes=10_000)
    for i in range(5):
        store.put("k1", {"id": f"r{i}"}, [{"role": "user", "content": "x"}])
    assert len(store) == 3 and store.get("k1", "r0") is None and store.get("k1", "r4") is not None
    assert store.get("k2", "r4") is None and store.get(None, "r4") is None
    assert not store.delete("k2", "r4") and store.delete("k1", "r4") and store.get("k1", "r4") is None
    store.put("k1", {"id": "big"}, [{"role": "user", "content": "y" * 9_950}])  # the oldest make room
    assert store.bytes <= 10_000 and store.get("k1", "r2") is None and store.get("k1", "big") is not None
    store.put("k1", {"id": "huge"}, [{"role": "user", "content": "z" * 20_000}])  # larger than the store
    assert store.get("k1", "huge") is None and store.get("k1", "big") is not None


class ScriptedEngine:
    """Streams a fixed answer a few characters at a time, as an engine would grow it."""

    backend, lora_names, max_num_seqs, vocab_size, errored = "scripted", [], 4, 49152, False

    def __init__(self, spec, tokenizer, answer: str) -> None:
        from swiftcli.config.spec import GenerationConfig

        self.spec, self.hf_tokenizer, self.answer = spec, tokenizer, answer
        self.max_model_len = 2048
        self.generation_config = GenerationConfig()

    def num_unfinished(self) -> int:
        return 0

    async def generate(self, request: EngineRequest, *, guided=None) -> AsyncIterator[RequestResult]:
        ids = list(self.hf_tokenizer.encode(self.answer, add_special_tokens=False))
        for n in range(1, len(ids) + 1):
            text = self.hf_tokenizer.decode(ids[:n])
            done = n == len(ids)
            yield RequestResult(request.request_id, len(request.prompt_ids),
                                [Completion(0, text, ids[:n], "stop" if done else None)], done)


@pytest.fixture(scope="module")
def app_client(embedded_spec):
    from transformers import AutoTokenizer

    from swiftcli.registry.templates import get_template

    tokenizer = AutoTokenizer.from_pretrained(embedded_spec.model_dir)
    engine = ScriptedEngine(SimpleNamespace(model_type=MODEL, model_dir=embedded_spec.model_dir), tokenizer,
                            ANSWER)
    template = get_template(embedded_spec.template_type, tokenizer)
    app = create_app(ServerSettings(api_key="sekrit", reasoning_parser="deepseek_r1"), engine=engine,
                     template=template)
    with TestClient(app) as c:
        yield c, engine


def test_key_by_bearer_or_x_api_key_and_401_in_each_routes_shape(app_client):
    c, _ = app_client
    body = {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]}
    resp = c.post("/v1/messages", json=body)
    assert resp.status_code == 401
    assert resp.json() == {"type": "error", "error": {"type": "authentication_error",
                                                      "message": resp.json()["error"]["message"]}}
    assert c.post("/v1/messages", json=body, headers={"x-api-key": "wrong"}).status_code == 401
    assert c.post("/v1/messages", json=body, headers={"x-api-key": "sekrit"}).status_code == 200
    assert c.post("/v1/messages", json=body, headers={"Authorization": "Bearer sekrit"}).status_code == 200
    resp = c.post("/v1/responses", json={"model": MODEL, "input": "Hi"})
    assert resp.status_code == 401 and resp.json()["error"]["type"] == "authentication_error"
    assert c.post("/v1/responses", json={"model": MODEL, "input": "Hi"},
                  headers={"x-api-key": "sekrit"}).status_code == 200


def test_reasoning_becomes_summary_items_thinking_blocks_and_reasoning_tokens(app_client):
    c, engine = app_client
    oai = openai.OpenAI(base_url="http://testserver/v1", api_key="sekrit", http_client=c, max_retries=0)
    resp = oai.responses.create(model=MODEL, input="What is the capital of France?")
    assert [item.type for item in resp.output] == ["reasoning", "message"]
    assert resp.output[0].summary[0].text.strip() == "Paris is the capital."
    assert resp.output_text.strip() == "Paris."
    reasoning_tokens = resp.usage.output_tokens_details.reasoning_tokens
    assert 0 < reasoning_tokens < resp.usage.output_tokens
    events = list(oai.responses.create(model=MODEL, input="What is the capital of France?", stream=True))
    types = [e.type for e in events]
    assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.reasoning_summary_part.added"]
    assert "response.reasoning_summary_text.delta" in types and "response.output_text.delta" in types
    assert types.index("response.reasoning_summary_part.done") < types.index("response.content_part.added")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    summary = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
    assert summary == resp.output[0].summary[0].text
    final = events[-1].response
    assert final.output[0].summary[0].text == summary and final.output_text == resp.output_text
    with oai.responses.stream(model=MODEL, input="What is the capital of France?") as stream:
        assert stream.get_final_response().output_text == resp.output_text

    # A client that stores nothing asks for the reasoning in the item and sends it back with the next turn.
    sealed = oai.responses.create(model=MODEL, input="Capital?", store=False,
                                  include=["reasoning.encrypted_content"])
    reasoning = sealed.output[0]
    assert reasoning.encrypted_content
    streamed = list(oai.responses.create(model=MODEL, input="Capital?", store=False, stream=True,
                                         include=["reasoning.encrypted_content"]))
    assert streamed[-1].response.output[0].encrypted_content == reasoning.encrypted_content
    from swiftcli.server.responses import input_messages

    back = [{"role": "user", "content": "Capital?"},
            {"type": "reasoning", "id": reasoning.id, "summary": [], "encrypted_content": reasoning.encrypted_content},
            {"role": "assistant", "content": [{"type": "output_text", "text": sealed.output_text}]}]
    assert input_messages(back)[1]["reasoning_content"] == reasoning.summary[0].text
    with pytest.raises(openai.BadRequestError, match="encrypted_content"):
        oai.responses.create(model=MODEL, input=[{**back[1], "encrypted_content": "not base64!"}, back[0]])
    with pytest.raises(openai.BadRequestError, match="include"):
        oai.responses.create(model=MODEL, input="Hi", include=["message.output_text.logprobs"])

    claude = anthropic.Anthropic(base_url="http://testserver", api_key="sekrit", http_client=c, max_retries=0)
    msg = claude.messages.create(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "Capital?"}])
    assert [b.type for b in msg.content] == ["thinking", "text"]
    assert msg.content[0].thinking == resp.output[0].summary[0].text and msg.content[1].text == resp.output_text
    with claude.messages.stream(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "Capital?"}]) \
            as stream:
        streamed = stream.get_final_message()
    assert [b.model_dump(exclude={"parsed_output"}) for b in streamed.content] == \
        [b.model_dump() for b in msg.content]
    # the model always thinks (a reasoning parser, no switch): asking it not to is refused, asking it to is not
    with pytest.raises(anthropic.BadRequestError, match="always thinks"):
        claude.messages.create(model=MODEL, max_tokens=8, thinking={"type": "disabled"},
                               messages=[{"role": "user", "content": "Hi"}])
    assert claude.messages.create(model=MODEL, max_tokens=8, thinking={"type": "enabled", "budget_tokens": 1024},
                                  messages=[{"role": "user", "content": "Hi"}]).content


def test_items_and_blocks_translate_to_chat_messages():
    from swiftcli.server.messages import CountTokensRequest, chat_messages
    from swiftcli.server.responses import input_messages

    items = [{"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
             {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "call it"}]},
             {"type": "function_call", "call_id": "c1", "name": "w", "arguments": '{"city": "Paris"}'},
             {"type": "function_call", "call_id": "c2", "name": "w", "arguments": '{"city": "Rome"}'},
             {"type": "function_call_output", "call_id": "c1", "output": "21C"},
             {"type": "function_call_output", "call_id": "c2", "output": "25C"}]
    assert input_messages(items) == [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "reasoning_content": "call it", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "w", "arguments": '{"city": "Paris"}'}},
            {"id": "c2", "type": "function", "function": {"name": "w", "arguments": '{"city": "Rome"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "21C"},
        {"role": "tool", "tool_call_id": "c2", "content": "25C"}]
    req = CountTokensRequest(model=MODEL, system=[{"type": "text", "text": "Be brief."}], messages=[
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": ""},
                                          {"type": "tool_use", "id": "t1", "name": "w", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "21C"},
                                     {"type": "text", "text": "And tomorrow?"}]}])
    assert chat_messages(req) == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "reasoning_content": "hm", "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "w", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "21C"}, {"role": "user", "content": "And tomorrow?"}]
