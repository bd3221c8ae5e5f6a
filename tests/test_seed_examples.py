"""ms-swift's documented vLLM examples (batch, streaming, chatglm3), word for word but for the import line and
the model type. `get_vllm_engine` hands back the session engine so the examples don't each start one."""

from __future__ import annotations

import pytest

import swiftcli


@pytest.fixture
def shared_engine(vllm_engine, monkeypatch):
    def get_vllm_engine(model_type, *args, **kwargs):
        assert model_type == swiftcli.ModelType.smollm2_135m_instruct and not args and not kwargs
        return vllm_engine

    saved = vllm_engine.generation_config.copy()
    monkeypatch.setattr(swiftcli, "get_vllm_engine", get_vllm_engine)
    yield vllm_engine
    vllm_engine.generation_config = saved


def test_batch_example(shared_engine, capsys):
    from swiftcli import ModelType, get_default_template_type, get_template, get_vllm_engine, inference_vllm

    model_type = ModelType.smollm2_135m_instruct
    llm_engine = get_vllm_engine(model_type)
    template_type = get_default_template_type(model_type)
    template = get_template(template_type, llm_engine.hf_tokenizer)
    # an interface like `transformers.GenerationConfig`
    llm_engine.generation_config.max_new_tokens = 256

    request_list = [{'query': '你好!'}, {'query': '浙江的省会在哪？'}]
    resp_list = inference_vllm(llm_engine, template, request_list)
    for request, resp in zip(request_list, resp_list):
        print(f"query: {request['query']}")
        print(f"response: {resp['response']}")

    history1 = resp_list[1]['history']
    request_list = [{'query': '这有什么好吃的', 'history': history1}]
    resp_list = inference_vllm(llm_engine, template, request_list)
    for request, resp in zip(request_list, resp_list):
        print(f"query: {request['query']}")
        print(f"response: {resp['response']}")
        print(f"history: {resp['history']}")

    out = capsys.readouterr().out
    assert out.count("response: ") == 3
    assert len(resp_list[0]['history']) == 2 and resp_list[0]['history'][0][0] == '浙江的省会在哪？'
    assert all(turn[1] for turn in resp_list[0]['history'])


def test_streaming_example(shared_engine, capsys):
    from swiftcli import ModelType, get_default_template_type, get_template, get_vllm_engine, inference_stream_vllm

    model_type = ModelType.smollm2_135m_instruct
    llm_engine = get_vllm_engine(model_type)
    template_type = get_default_template_type(model_type)
    template = get_template(template_type, llm_engine.hf_tokenizer)
    llm_engine.generation_config.max_new_tokens = 256

    request_list = [{'query': '你好!'}, {'query': '浙江的省会在哪？'}]
    gen = inference_stream_vllm(llm_engine, template, request_list)
    query_list = [request['query'] for request in request_list]
    print(f"query_list: {query_list}")
    updates = 0
    for resp_list in gen:
        response_list = [resp['response'] for resp in resp_list]
        print(f'response_list: {response_list}')
        updates += 1

    history1 = resp_list[1]['history']
    request_list = [{'query': '这有什么好吃的', 'history': history1}]
    gen = inference_stream_vllm(llm_engine, template, request_list)
    query = request_list[0]['query']
    print_idx = 0
    print(f'query: {query}\nresponse: ', end='')
    for resp_list in gen:
        response = resp_list[0]['response']
        print(response[print_idx:], end='', flush=True)
        print_idx = len(response)
    print()
    history = resp_list[0]['history']
    print(f'history: {history}')

    assert updates > 2  # the answers grew token by token, not in one piece
    assert len(history) == 2 and history[1][1] == response and response
    assert "\ufffd" not in capsys.readouterr().out  # no broken multi-byte characters mid-stream


def test_chatglm3_example_shape(shared_engine):
    """The chatglm3 example: multi-turn through one template and the greedy answer to a factual question."""
    from swiftcli import ModelType, get_default_template_type, get_template, get_vllm_engine, inference_vllm

    model_type = ModelType.smollm2_135m_instruct
    llm_engine = get_vllm_engine(model_type)
    template_type = get_default_template_type(model_type)
    template = get_template(template_type, llm_engine.hf_tokenizer)
    llm_engine.generation_config.max_new_tokens = 256
    llm_engine.generation_config.temperature = 0

    request_list = [{'query': 'What is the capital of France?'}, {'query': 'Name a primary colour.'}]
    resp_list = inference_vllm(llm_engine, template, request_list)
    assert "Paris" in resp_list[0]['response']
    history = resp_list[0]['history']
    resp_list = inference_vllm(llm_engine, template, [{'query': 'And its population?', 'history': history}])
    assert resp_list[0]['history'][:1] == history and resp_list[0]['response']
