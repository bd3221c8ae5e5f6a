"""The client API against the session deploy server, and ms-swift 2.x's documented client examples.

The examples are ms-swift's (docs `LLM/VLLM推理加速与部署.md`), run as written except for the import line, and
the server address: the docs assume localhost:8000, the test server listens on a free port.
"""

from __future__ import annotations

import asyncio
import functools
import textwrap

import openai
import pytest

SWIFT_CLIENT_CHAT = """
from swift.llm import get_model_list_client, XRequestConfig, inference_client

model_list = get_model_list_client()
model_type = model_list.data[0].id
print(f'model_type: {model_type}')

query = '浙江的省会在哪里?'
request_config = XRequestConfig(seed=42)
resp = inference_client(model_type, query, request_config=request_config)
response = resp.choices[0].message.content
print(f'query: {query}')
print(f'response: {response}')

history = [(query, response)]
query = '这有什么好吃的?'
request_config = XRequestConfig(stream=True, seed=42)
stream_resp = inference_client(model_type, query, history, request_config=request_config)
print(f'query: {query}')
print('response: ', end='')
for chunk in stream_resp:
    print(chunk.choices[0].delta.content, end='', flush=True)
print()
"""

OPENAI_CHAT = """
from openai import OpenAI
client = OpenAI(
    api_key='EMPTY',
    base_url='http://localhost:8000/v1',
)
model_type = client.models.list().data[0].id
print(f'model_type: {model_type}')

query = '浙江的省会在哪里?'
messages = [{
    'role': 'user',
    'content': query
}]
resp = client.chat.completions.create(
    model=model_type,
    messages=messages,
    seed=42)
response = resp.choices[0].message.content
print(f'query: {query}')
print(f'response: {response}')

# 流式
messages.append({'role': 'assistant', 'content': response})
query = '这有什么好吃的?'
messages.append({'role': 'user', 'content': query})
stream_resp = client.chat.completions.create(
    model=model_type,
    messages=messages,
    stream=True,
    seed=42)

print(f'query: {query}')
print('response: ', end='')
for chunk in stream_resp:
    print(chunk.choices[0].delta.content, end='', flush=True)
print()
"""

OPENAI_COMPLETION = """
from openai import OpenAI
client = OpenAI(
    api_key='EMPTY',
    base_url='http://localhost:8000/v1',
)
model_type = client.models.list().data[0].id
print(f'model_type: {model_type}')

query = '浙江 -> 杭州\\n安徽 -> 合肥\\n四川 ->'
kwargs = {'model': model_type, 'prompt': query, 'seed': 42, 'temperature': 0.1, 'max_tokens': 32}

resp = client.completions.create(**kwargs)
response = resp.choices[0].text
print(f'query: {query}')
print(f'response: {response}')

# 流式
stream_resp = client.completions.create(stream=True, **kwargs)
response = resp.choices[0].text
print(f'query: {query}')
print('response: ', end='')
for chunk in stream_resp:
    print(chunk.choices[0].text, end='', flush=True)
print()
"""

def run_example(code: str, server) -> str:
    """Run an example with `from swift.llm import` -> `from swiftcli import`, pointed at the test server."""
    import contextlib
    import io

    code = textwrap.dedent(code).replace("from swift.llm import", "from swiftcli import")
    code = code.replace("http://localhost:8000/v1", server.base_url)
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.split("\n", 2)[1], "<import>", "exec"), namespace)  # the import line
        for name in ("get_model_list_client", "inference_client"):
            if name in namespace:
                namespace[name] = functools.partial(namespace[name], port=server.port)
        exec(compile(code.split("\n", 2)[2], "<example>", "exec"), namespace)
    return out.getvalue()


def _responses(output: str) -> list[str]:
    lines = output.splitlines()
    assert lines[0] == "model_type: smollm2-135m-instruct"
    return [line[len("response: "):] for line in lines if line.startswith("response: ")]


@pytest.mark.parametrize("example", [SWIFT_CLIENT_CHAT, OPENAI_CHAT], ids=["swift-client", "openai"])
def test_chat_examples_run_unchanged(deploy_server, example):
    output = run_example(example, deploy_server)
    responses = _responses(output)
    assert len(responses) == 2 and all(r.strip() for r in responses)
    assert "None" not in responses[1]  # streamed deltas always carry a string


def test_completion_example_runs_unchanged(deploy_server):
    # (the swift-client base-model example runs against a base model in test_deploy.py)
    responses = _responses(run_example(OPENAI_COMPLETION, deploy_server))
    # Same seed and settings: the streamed text equals the whole answer.
    assert len(responses) == 2 and responses[0].strip() and responses[0] == responses[1]


def test_inference_client_types_history_and_system(deploy_server, embedded_spec):
    from openai.types import Completion
    from openai.types.chat import ChatCompletion

    from swiftcli import XRequestConfig, inference_client

    config = XRequestConfig(max_tokens=16, temperature=0)
    resp = inference_client("smollm2-135m-instruct", "What is the capital of France?", request_config=config,
                            url=deploy_server.base_url)
    assert isinstance(resp, ChatCompletion)
    assert resp.choices[0].message.content == "The capital of France is Paris."
    with_system = inference_client("smollm2-135m-instruct", "What is the capital of France?",
                                   [("Hi", "Hello!")], "Answer briefly.", request_config=config,
                                   port=deploy_server.port)
    assert with_system.usage.prompt_tokens > resp.usage.prompt_tokens
    raw = inference_client("smollm2-135m-instruct", "The capital of France is", request_config=config,
                           port=deploy_server.port, is_chat_request=False)
    assert isinstance(raw, Completion) and raw.choices[0].text.startswith(" Paris")
    sampled = XRequestConfig(max_tokens=12, temperature=0.9, top_k=20, top_p=0.9, repetition_penalty=1.05,
                             n=2, seed=3, stop=["\n"])
    two = inference_client("smollm2-135m-instruct", "Tell me a joke.", request_config=sampled,
                           port=deploy_server.port)
    assert len(two.choices) == 2
    with pytest.raises(openai.NotFoundError):
        inference_client("missing-model", "Hi", request_config=config, port=deploy_server.port,
                         is_chat_request=True)


def test_inference_client_async(deploy_server):
    from swiftcli import XRequestConfig, inference_client_async

    async def run() -> tuple[str, str]:
        config = XRequestConfig(max_tokens=16, temperature=0)
        resp = await inference_client_async("smollm2-135m-instruct", "What is the capital of France?",
                                            request_config=config, port=deploy_server.port)
        stream = await inference_client_async("smollm2-135m-instruct", "What is the capital of France?",
                                              request_config=XRequestConfig(max_tokens=16, temperature=0,
                                                                            stream=True),
                                              port=deploy_server.port)
        parts = [chunk.choices[0].delta.content or "" async for chunk in stream]
        return resp.choices[0].message.content, "".join(parts)

    whole, streamed = asyncio.run(run())
    assert whole == streamed == "The capital of France is Paris."


def test_request_config_maps_fields():
    from swiftcli import XRequestConfig

    kwargs = XRequestConfig(max_tokens=5, top_k=3, repetition_penalty=1.1, seed=1, logprobs=2).to_kwargs(chat=True)
    assert kwargs == {"max_tokens": 5, "n": 1, "seed": 1, "stream": False, "logprobs": True, "top_logprobs": 2,
                      "extra_body": {"top_k": 3, "repetition_penalty": 1.1}}
    assert XRequestConfig(logprobs=True).to_kwargs(chat=False)["logprobs"] == 1
