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


def test_batches_get_only_finished_states_with_the_same_answers(vllm_engine):
    """Batch paths ask vLLM for final outputs only (as `LLM.generate` does): one state per request, the same
    greedy answers as the streamed ones."""
    from swiftcli.config import GenerationConfig
    from swiftcli.engines.base import EngineRequest, finished_results

    template = get_template(get_default_template_type(ModelType.smollm2_135m_instruct), vllm_engine.hf_tokenizer)
    config = GenerationConfig(max_new_tokens=12, temperature=0.0, do_sample=False)
    queries = ["What is the capital of France?", "Hi", "Name a colour."]

    def requests() -> list[EngineRequest]:
        return [EngineRequest(template.encode(q), config, stop_token_ids=template.stop_token_ids) for q in queries]

    streamed = list(vllm_engine.stream(requests()))
    assert len(streamed) > 2 * len(queries)  # the states in between
    finals = list(finished_results(vllm_engine, batch := requests()))
    assert len(finals) == len(queries) and all(r.finished for r in finals)
    by_id = {r.request_id: r.outputs[0].text for r in finals}
    expected = [r.outputs[0].text for r in streamed if r.finished]
    assert sorted(by_id.values()) == sorted(expected) and "Paris" in by_id[batch[0].request_id]
