"""The seed's Python examples on the embedded model, through the real vLLM CPU engine."""

from swiftcli import ModelType, get_default_template_type, get_template, inference_stream_vllm, inference_vllm


def test_batch_then_streaming_multi_turn(vllm_engine):
    model_type = ModelType.smollm2_135m_instruct
    template = get_template(get_default_template_type(model_type), vllm_engine.hf_tokenizer)
    vllm_engine.generation_config.max_new_tokens = 64
    vllm_engine.generation_config.temperature = 0
    request_list = [{"query": "What is the capital of France?"}, {"query": "你好!"}]
    resp_list = inference_vllm(vllm_engine, template, request_list)
    assert "Paris" in resp_list[0]["response"]
    assert resp_list[0]["history"] == [["What is the capital of France?", resp_list[0]["response"]]]

    history = resp_list[0]["history"]
    seen = []
    for resp in inference_stream_vllm(vllm_engine, template, [{"query": "And of Italy?", "history": history}]):
        seen.append(resp[0]["response"])
    assert len(seen) > 1 and seen[-1].startswith(seen[1][:1])
    assert len(resp[0]["history"]) == 2
